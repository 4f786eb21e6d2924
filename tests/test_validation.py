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
                "--posterior",
                str(tmp_path / "none.csv"),
            ]
        )
        == 0
    )
    text = out.read_text()
    for heading in (
        "## 1. Docking",
        "## 2. Direction checks",
        "## 3. Patterns",
        "## 4. Does the owners-versus-streamer verdict",
    ):
        assert heading in text
    passed, total = map(int, re.search(r"\*\*(\d+) of (\d+)\s+passed\*\*", text).groups())
    assert passed == total >= 10
    assert text.count("| T") == 8  # every target is reported
