"""The command line: outputs, bad input and atomic writes."""

import json
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main


def run_cli(*args):
    return main(["run", *map(str, args)])


def test_run_writes_summary_timeseries_and_manifest(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("--consumers", 3000, "--owners", 20, "--days", 8, "--seed", 4, "--out", out) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["scenario", "replicate", "seed", "channel", "metric", "value"]
    assert set(summary.channel) == {"owners", "streamer", "conventional", "all"}
    assert {"reach", "conversion", "return_rate"} <= set(summary.metric)
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert len(ts) == 8 * 4 and {"day", "channel", "orders", "reach"} <= set(ts.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 4 and len(manifest["seeds"]) == 1
    assert manifest["scenarios"][0]["parameters"]["world"]["consumers"] == 3000
    assert manifest["versions"]["fishschool"]
    assert manifest["timings"]["wall_s"] > 0
    assert (out / "report.html").is_file() and (out / "figures" / "reach.png").is_file()
    printed = capsys.readouterr().out
    assert "owners" in printed and "streamer" in printed and "return_rate" in printed


def test_config_file_and_options(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "horizon = 3\n[world]\nconsumers = 2500\n[levers]\nworld.owners = 10\nhype.live = 1.5\n"
    )
    out = tmp_path / "r"
    assert run_cli("--config", cfg, "--days", 4, "--out", out, "--quiet", "--no-report") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    scenario = manifest["scenarios"][0]
    assert scenario["parameters"]["world"]["days"] == 4  # the option wins over the file
    assert scenario["parameters"]["hype"]["live"] == 1.5
    assert "hype.live = 1.5" in scenario["text"]
    assert not (out / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owners", "-1"], "levers.world.owners = -1 is outside the allowed range"),
        (["--consumers", "1"], "world.consumers = 1 is outside the allowed range [2,"),
        (["--owners", "50", "--consumers", "20"], "world.owners = 50 is outside"),
        (["--config", "missing.toml"], "missing.toml: no such scenario file"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "r"
    assert run_cli(*args, "--days", 2, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fishschool: error: ") and message in err[-1]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder either


def test_bad_config_value_names_file_and_key(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[world]\nowners.group_size_max = 800\n")
    assert run_cli("--config", cfg, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert (
        "bad.toml: world.owners.group_size_max = 800 is outside the allowed range [1, 500]" in err
    )


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli("--consumers", 2000, "--owners", 5, "--days", 2, "--out", out) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert (
        run_cli("--consumers", 2000, "--owners", 5, "--days", 2, "--out", out, "--force", "--quiet")
        == 0
    )
    assert not (out / "keep.txt").exists() and (out / "summary.csv").exists()


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    import sim.output

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.output.json, "dump", boom)  # dies while writing the manifest
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        run_cli("--consumers", 2000, "--owners", 5, "--days", 2, "--out", out, "--quiet")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_installed_command_exit_status(tmp_path):
    """The real entry point, in its own process: status 2 and one line on stderr."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("fishschool")
    done = subprocess.run(
        [str(exe), "run", "--owners", "-2", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "fishschool: error: --set levers.world.owners=-2: levers.world.owners = -2 is outside "
        "the allowed range [0, 5000000] (Shop owners ('small b'); each is also a consumer)"
    )
    assert not (tmp_path / "r").exists()
