"""The command line: outputs, bad input and atomic writes."""

import json
import re
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
    # provenance: the code, the command, when
    commit = manifest["git_commit"]
    assert commit == "not a git checkout" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert manifest["command"][0] == "fishschool"
    assert manifest["started"] <= manifest["finished"] == manifest["created"]
    assert (out / "report.html").is_file() and (out / "figures" / "reach.png").is_file()
    printed = capsys.readouterr().out
    assert "owners" in printed and "streamer" in printed and "return_rate" in printed


def test_config_file_and_options(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[world]\ndays = 3\nconsumers = 2500\n[levers]\nowners.count = 10\nhype.live = 1.5\n"
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
        (["--owners", "-1"], "--owners -1: levers.owners.count = -1 is outside the allowed range"),
        (
            ["--consumers", "1"],
            "--consumers 1: world.consumers = 1 is outside the allowed range [2,",
        ),
        (["--owners", "50", "--consumers", "20"], "owners.count = 50 is outside"),
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


TINY = ["--consumers", 2000, "--owners", 5, "--days", 2, "--quiet", "--no-report"]


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli(*TINY, "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["tool"], manifest["content"]) == ("fishschool", "experiment")
    (out / "stale.txt").write_text("from the last run")
    assert run_cli(*TINY, "--out", out) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "stale.txt").exists()
    assert run_cli(*TINY, "--out", out, "--force") == 0  # a results folder of ours: replaced
    assert not (out / "stale.txt").exists() and (out / "summary.csv").exists()


@pytest.mark.parametrize(
    "manifest",
    [None, "{}", '{"tool": "other"}', '{"tool": "fishschool", "content": "sweep"}', "{trunc"],
    ids=["no manifest", "empty manifest", "another tool", "a sweep", "corrupt manifest"],
)
def test_force_never_replaces_a_folder_fishschool_did_not_write(tmp_path, capsys, manifest):
    """--force on a folder of a user's notes (or a sweep): exit 2 naming it, nothing touched."""
    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    if manifest is not None:
        (out / "manifest.json").write_text(manifest)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli(*TINY, "--out", out, "--force") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fishschool: error: {out}: ")
    assert "--force replaces only" in err[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (out / "keep.txt").read_text() == "mine"


def test_force_replaces_a_folder_of_an_earlier_version(tmp_path):
    """Results folders written before manifests named their tool are still ours."""
    out = tmp_path / "r"
    assert run_cli(*TINY, "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["tool"], manifest["content"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run_cli(*TINY, "--out", out, "--force") == 0
    assert json.loads((out / "manifest.json").read_text())["tool"] == "fishschool"


def test_explain_force_replaces_only_its_own_kind_of_folder(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    args = ["explain", "hybrid", "--channels", "owners", "streamer", "--consumers", "1500"]
    args += ["--owners", "10", "--days", "3", "--replicates", "1", "--workers", "1", "--quiet"]
    assert main([*args, "--out", str(notes), "--force"]) == 2
    assert (notes / "keep.txt").exists()
    out = tmp_path / "x"
    assert main([*args, "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["content"] == "explanation"
    assert main([*args, "--out", str(out), "--force"]) == 0


def test_results_folder_respects_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        assert run_cli(*TINY, "--out", tmp_path / "r") == 0
    finally:
        os.umask(old)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o755


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path, monkeypatch, capsys):
    import sim.experiments.output

    def boom(*a, **k):
        raise KeyboardInterrupt

    # dies while writing the manifest
    monkeypatch.setattr(sim.experiments.output.json, "dump", boom)
    out = tmp_path / "r"
    assert run_cli("--consumers", 2000, "--owners", 5, "--days", 2, "--out", out, "--quiet") == 130
    assert capsys.readouterr().err == "fishschool: interrupted\n"
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
        "fishschool: error: --owners -2: levers.owners.count = -2 is outside "
        "the allowed range [0, 5000000] (Shop owners ('small b'); each is also a consumer)"
    )
    assert not (tmp_path / "r").exists()


def test_run_on_a_dask_cluster_gives_the_same_numbers(tmp_path, dask_client):
    """run (and compare) take --scheduler like sweep: the same runs, the same numbers."""
    size = ("--consumers", 2000, "--days", 5, "--replicates", 2, "--quiet", "--no-report")
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert run_cli("owners", *size, "--workers", 1, "--out", local) == 0
    address = dask_client.scheduler.address
    assert run_cli("owners", *size, "--scheduler", address, "--out", dask) == 0
    a, b = (pd.read_csv(f / "summary.csv") for f in (local, dask))
    pd.testing.assert_frame_equal(a, b)


def test_metrics_option_chooses_the_printed_rows(tmp_path, capsys):
    size = ("--consumers", 2000, "--days", 5, "--replicates", 1, "--no-report")
    out = tmp_path / "m"
    assert run_cli(*size, "--metrics", "return_rate", "brands", "--out", out) == 0
    printed = capsys.readouterr().out
    assert "return_rate" in printed and "brands" in printed and "visit_conversion" not in printed
    assert "2 of" in printed and "summary.csv" in printed
    assert "visit_conversion" in set(pd.read_csv(out / "summary.csv").metric)  # all are saved


def test_unknown_metric_is_a_clean_error(tmp_path, capsys):
    out = tmp_path / "m"
    assert run_cli("--consumers", 2000, "--days", 5, "--metrics", "nonsense", "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metrics nonsense" in err[0] and "return_rate" in err[0]
    assert not out.exists()
