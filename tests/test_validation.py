"""The validation report regenerates at a small size, and every check in it passes."""

import re

import pytest

from sim.cli import main


@pytest.mark.slow
def test_validation_report_small(tmp_path, capsys):
    out = tmp_path / "VALIDATION.md"
    assert (
        main(
            [
                "validate-model",
                "--size",
                "small",
                "--out",
                str(out),
                "--workers",
                "2",
            ]
        )
        == 0
    )
    text = out.read_text()
    for heading in (
        "## 1. Docking",
        "## 2. Direction checks",
        "## 3. Patterns",
        "## 4. Calibration",
        "### Posterior predictive coverage",
        "## 5. The owners-versus-streamer verdict under parameter uncertainty",
        "## 6. Where does the streamer beat the owners?",
    ):
        assert heading in text
    passed, total = map(int, re.search(r"\*\*(\d+) of (\d+)\s+passed\*\*", text).groups())
    assert passed == total >= 10
    assert text.count("| T1 |") == 3  # patterns, predictive coverage, scale check
    # the verdict across posterior draws: a share for every verdict metric
    for metric in ("return_rate", "brand_profit", "satisfaction"):
        assert re.search(rf"\| {metric} \| (higher|lower) \| 3 \| \d+% \[\d+%, \d+%\] \|", text)
    # a PRIM paragraph for each of the sweep's metrics
    assert text.count("the streamer beats the owners at") == 4


def test_validation_refuses_a_folder_without_a_posterior(tmp_path, capsys):
    code = main(["validate-model", "--calibration", str(tmp_path), "--out", str(tmp_path / "V.md")])
    assert code == 2
    assert "no posterior_samples.csv" in capsys.readouterr().err
    assert not (tmp_path / "V.md").exists()
