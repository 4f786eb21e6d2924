"""docs/ODD.md stays true to the code: its parameter table is the generated one."""

from pathlib import Path

from sim.params import parameter_table

ODD = Path(__file__).resolve().parent.parent / "docs" / "ODD.md"


def test_odd_parameter_table_is_the_generated_one():
    text = ODD.read_text(encoding="utf-8")
    start, end = "<!-- parameter-table:start -->", "<!-- parameter-table:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == parameter_table(), (
        "docs/ODD.md section 8 is stale: paste the output of `python -m sim.params` between "
        "the parameter-table markers"
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
