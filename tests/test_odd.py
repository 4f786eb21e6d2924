"""docs/ODD.md stays true to the code: its parameter and metric tables are the generated ones."""

from pathlib import Path

from sim.world.metrics import metric_table
from sim.world.params import parameter_table

ODD = Path(__file__).resolve().parent.parent / "docs" / "ODD.md"


def generated_part(marker: str) -> str:
    text = ODD.read_text(encoding="utf-8")
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    assert start in text and end in text
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_odd_parameter_table_is_the_generated_one():
    assert generated_part("parameter-table") == parameter_table(), (
        "docs/ODD.md section 8 is stale: paste the output of `python -m sim.world.params` between "
        "the parameter-table markers"
    )


def test_odd_metric_table_is_the_generated_one():
    assert generated_part("metric-table") == metric_table(), (
        "docs/ODD.md section 7.10 is stale: paste the output of `python -m sim.world.metrics` "
        "between the metric-table markers"
    )


def test_every_submodel_of_the_schedule_is_described():
    text = ODD.read_text(encoding="utf-8")
    for heading in (
        "7.1 Assortment",
        "7.2 Exposure",
        "7.3 Purchase",
        "7.4 Delivery",
        "7.5 Return",
        "7.6 Feedback",
        "7.7 Churn",
        "7.8 2b live",
        "7.9 Events",
        "7.10 Economics",
    ):
        assert heading in text, heading
