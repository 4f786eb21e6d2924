"""Scenario files, the strategist's commands and paired comparisons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.stats import paired_differences, unpaired_differences
from sim.cli import main
from sim.experiments.experiment import run_experiment
from sim.experiments.scenario import ScenarioError, load, replicate_seeds, shipped_dir

SMALL = ["world.consumers=2000", "levers.owners.count=10", "world.days=35", "replicates=1"]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# -- shipped scenarios -----------------------------------------------------------------------
SHIPPED = sorted(p.stem for p in shipped_dir().glob("*.toml"))


def test_the_required_scenarios_are_shipped():
    required = {
        "owners",
        "streamer",
        "hybrid",
        "streamer_banned",
        "owner_churn",
        "lax_selection",
        "no_2b_live",
        "defective_batch",
        "scale_10k",
        "scale_100k",
        "scale_1m",
        "equal_audience",
        "real_ratio",
    }
    assert required <= set(SHIPPED)


def test_equal_audience_gives_both_channels_the_same_audience():
    from sim.world.model import CommerceModel

    model = CommerceModel(load("equal_audience").params)
    members, followers = (model.consumers.group >= 0).sum(), model.consumers.follows.sum()
    assert abs(members / followers - 1) < 0.05


def test_real_ratio_keeps_the_briefs_proportions():
    p = load("real_ratio").params
    scale = 1000  # 1:1000
    assert p.owners.count * scale == 200_000
    assert p.world.consumers * p.streamer.follower_share * scale == 50_000_000


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_validates_and_runs_small(name):
    path = shipped_dir() / f"{name}.toml"
    assert path.read_text().startswith("# Question:"), "each file opens with its question"
    scenario = load(name, SMALL)
    assert scenario.question
    exp = run_experiment([scenario], workers=1)
    orders = exp.summary[(exp.summary.metric == "orders") & (exp.summary.channel == "all")]
    assert orders.value.iloc[0] > 0


def test_list_shows_questions(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "streamer_banned" in out and "banned on day 30" in out


def test_validate_prints_ok(capsys):
    assert main(["validate", "owners", "streamer"]) == 0
    assert capsys.readouterr().out.count("ok  ") == 2


# -- extends and --set -----------------------------------------------------------------------
def test_extends_and_set_resolve_as_documented(tmp_path):
    write(
        tmp_path,
        "parent.toml",
        """
question = "parent question"
name = "parent"
seed = 5
replicates = 3
[world]
consumers = 3000
days = 20
[levers]
owners.commission = 0.1
hype.live = 0.5
[uncertainties]
purchase.trust = 1.0
""",
    )
    child = write(
        tmp_path,
        "child.toml",
        """
extends = "parent.toml"
[levers]
hype.live = 1.5
[events]
churn_wave_day = 10
""",
    )
    s = load(child, ["levers.owners.commission=0.3", "purchase.need=3.0", "replicates=4"])
    assert s.name == "child"  # a name is not inherited
    assert s.question == "parent question"  # a question is
    assert (s.seed, s.replicates, s.days) == (5, 4, 20)
    p = s.params
    assert p.world.consumers == 3000
    assert p.hype.live == 1.5  # the child wins over its parent
    assert p.owners.commission == 0.3  # --set wins over both
    assert p.purchase.trust == 1.0 and p.purchase.need == 3.0  # bare name placed by its kind
    assert p.events.churn_wave_day == 10
    assert "extends parent.toml" in s.text and "churn_wave_day" in s.text
    assert s.sha256 != load(child).sha256  # overrides change the identity


def test_replicate_seeds_are_stable_and_independent():
    a = replicate_seeds(7, 5)
    assert a == replicate_seeds(7, 5) and len(set(a)) == 5
    assert a[:3] == replicate_seeds(7, 3)
    assert set(a).isdisjoint(replicate_seeds(8, 5))


# -- bad scenario files ----------------------------------------------------------------------
BAD = [
    ("unknown top key", "replicate = 3\n", "unknown key 'replicate' (did you mean 'replicates'?)"),
    (
        "unknown section",
        "[lever]\nowners.commission = 0.1\n",
        "unknown key 'lever' (did you mean 'levers'?)",
    ),
    (
        "unknown parameter",
        "[levers]\nowners.comission = 0.1\n",
        "levers.owners.comission: unknown parameter 'owners.comission' "
        "(did you mean 'commission'?)",
    ),
    (
        "unknown section of parameters",
        "[uncertainties]\npurchas.trust = 1.0\n",
        "unknown parameter 'purchas.trust' (did you mean 'purchase.trust'?)",
    ),
    (
        "wrong kind",
        "[levers]\nowners.open_rate = 0.3\n",
        "levers.owners.open_rate: owners.open_rate is an uncertainty, not a lever: "
        "move it to [uncertainties]",
    ),
    (
        "lever under uncertainties",
        "[uncertainties]\nhype.live = 2.0\n",
        "owners.open_rate"
        if False
        else "hype.live is a lever, not an uncertainty: move it to [levers]",
    ),
    (
        "wrong type",
        '[levers]\nowners.commission = "high"\n',
        "levers.owners.commission = 'high' has the wrong type: expected float",
    ),
    (
        "probability above 1",
        "[uncertainties]\nowners.open_rate = 1.5\n",
        "uncertainties.owners.open_rate = 1.5 is outside the allowed range [0, 1]",
    ),
    (
        "negative count",
        "[world]\nconsumers = -10\n",
        "world.consumers = -10 is outside the allowed range [2, ",
    ),
    (
        "group over 500",
        "[world]\nowners.group_size_max = 600\n",
        "world.owners.group_size_max = 600 is outside the allowed range [1, 500]",
    ),
    (
        "replicates zero",
        "replicates = 0\n",
        "replicates = 0 is outside the allowed range [1, 100000]",
    ),
    ("replicates float", "replicates = 2.5\n", "replicates = 2.5 has the wrong type: expected int"),
    (
        "horizon, an old key",
        "horizon = 30\n",
        "unknown key 'horizon'",
    ),
    (
        "event after the last day",
        "[world]\ndays = 20\n[events]\nstreamer_removed_day = 30\n",
        "events.streamer_removed_day = 30 is not within the simulated days (days 0 to 19",
    ),
    (
        "bad choice",
        '[world]\ngraph.topology = "lattice"\n',
        "world.graph.topology = 'lattice' is not allowed: choose one of",
    ),
    ("section not a table", "levers = 3\n", "[levers] must be a table of parameters"),
    ("invalid TOML", "[levers\n", "not valid TOML"),
    ("missing extends", 'extends = "nowhere.toml"\n', "extends = 'nowhere.toml': file not found"),
    ("extends not a string", "extends = 3\n", "extends = 3 must be a file name"),
    (
        "more owners than consumers",
        "[world]\nconsumers = 100\n[levers]\nowners.count = 200\n",
        "owners.count = 200 is outside the allowed range [0, world.consumers = 100]",
    ),
    (
        "non-finite",
        "[levers]\nowners.commission = nan\n",
        "levers.owners.commission = nan must be a finite number",
    ),
    ("name not a string", "name = 3\n", "name = 3 must be a string"),
    ("name with a path", 'name = "../../x"\n', "name = '../../x' is not a plain name"),
    ("absolute name", 'name = "/tmp/x"\n', "name = '/tmp/x' is not a plain name"),
    ("hidden name", 'name = ".x"\n', "name = '.x' is not a plain name"),
    (
        "missing edge list",
        '[world]\ngraph.topology = "edgelist"\ngraph.edgelist_path = "none.txt"\n',
        "world.graph.edgelist_path = '",
    ),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_scenario_files_exit_2_with_a_clear_line(tmp_path, capsys, kind, text, message):
    path = write(tmp_path, "bad.toml", text)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"fishschool: error: {path}") and message in err, err
    assert not out.exists()
    assert main(["validate", str(path)]) == 2


def test_cyclic_extends(tmp_path, capsys):
    write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    assert main(["validate", str(tmp_path / "a.toml")]) == 2
    assert "extends = cycle" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["levers.owners.commission"], "--set levers.owners.commission: expected key.path=value"),
        (
            ["owners.comission=0.1"],
            "unknown parameter 'owners.comission' (did you mean 'commission'?)",
        ),
        (
            ["levers.owners.commission=2"],
            "--set levers.owners.commission=2: levers.owners.commission = 2.0 is outside",
        ),
        (["world.days=0"], "--set world.days=0: world.days = 0 is outside the allowed range"),
    ],
)
def test_bad_overrides(capsys, sets, message):
    args = ["validate", "owners"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_scenario_suggests_a_shipped_one(capsys):
    assert main(["validate", "streamr"]) == 2
    assert "did you mean 'streamer'?" in capsys.readouterr().err


def test_nothing_is_executed_from_a_scenario(tmp_path):
    """A scenario is data: strings that look like code stay strings and are rejected."""
    evil = "[world]\ngraph.topology = \"__import__('os').system('touch pwned')\"\n"
    path = write(tmp_path, "evil.toml", evil)
    with pytest.raises(ScenarioError, match="is not allowed: choose one of"):
        load(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


# -- comparisons -------------------------------------------------------------------------------
def test_compare_of_a_scenario_with_itself_gives_zero_differences(tmp_path, capsys):
    a = write(tmp_path, "same_a.toml", 'extends = "' + str(shipped_dir() / "hybrid.toml") + '"\n')
    b = write(tmp_path, "same_b.toml", a.read_text())
    out = tmp_path / "cmp"
    args = ["compare", str(a), str(b), "--out", str(out), "--workers", "2", "--no-report"]
    for s in ["world.consumers=3000", "levers.owners.count=20", "world.days=15", "replicates=4"]:
        args += ["--set", s]
    assert main(args) == 0
    summary = pd.read_csv(out / "summary.csv")
    diff = paired_differences(summary, "same_a").dropna(subset=["lo"])
    assert len(diff) > 50
    assert ((diff.lo <= 0) & (diff.hi >= 0)).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["scenarios"]] == ["same_a", "same_b"]


def test_paired_intervals_are_narrower_than_unpaired():
    sets = ["world.consumers=4000", "levers.owners.count=30", "world.days=30", "replicates=6"]
    exp = run_experiment([load("owners", sets), load("lax_selection", sets)], workers=2)
    paired = paired_differences(exp.summary, "owners").set_index(["channel", "metric"])
    unpaired = unpaired_differences(exp.summary, "owners").set_index(["channel", "metric"])
    width = pd.DataFrame(
        {"paired": paired.hi - paired.lo, "unpaired": unpaired.hi - unpaired.lo}
    ).dropna()
    width = width[width.unpaired > 0]
    assert len(width) > 20
    ratio = width.paired / width.unpaired
    assert (ratio < 1).mean() > 0.7  # most intervals shrink ...
    assert ratio.median() < 0.8  # ... substantially (0.74 at the calibrated defaults)
    # Channels compete for the same needs, so the lever reaches the conventional channel too,
    # but through the owners' sales only: its difference is still paired more tightly.
    assert ratio[("conventional", "orders")] < 1
    assert ratio[("all", "orders")] < 1


def test_parallel_and_serial_give_the_same_numbers():
    sets = ["world.consumers=2000", "levers.owners.count=10", "world.days=10", "replicates=3"]
    scenarios = [load("owners", sets), load("streamer", sets)]
    serial = run_experiment(scenarios, workers=1)
    parallel = run_experiment(scenarios, workers=2)
    pd.testing.assert_frame_equal(serial.summary, parallel.summary)
    pd.testing.assert_frame_equal(serial.timeseries, parallel.timeseries)


def test_report_redraws_from_saved_results(tmp_path):
    out = tmp_path / "r"
    args = ["run", "streamer_banned", "--out", str(out)]
    for s in ["world.consumers=2000", "levers.owners.count=10", "replicates=2"]:
        args += ["--set", s]
    assert main(args + ["--quiet"]) == 0
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {
        "reach.png",
        "funnel.png",
        "return_rates.png",
        "costs.png",
        "trust.png",
        "owner_earnings.png",
        "events_streamer_banned.png",
    } <= figures
    (out / "report.md").unlink()
    for p in (out / "figures").iterdir():
        p.unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file() and (out / "figures" / "reach.png").is_file()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 7


def test_report_of_a_folder_that_is_not_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a results folder" in capsys.readouterr().err


def test_killed_run_leaves_no_complete_looking_folder(tmp_path):
    """SIGKILL in the middle of a run: no results folder appears at the destination."""
    out = tmp_path / "killed"
    exe = Path(sys.executable).with_name("fishschool")
    proc = subprocess.Popen(
        [
            str(exe),
            "run",
            "hybrid",
            "--out",
            str(out),
            "--quiet",
            "--workers",
            "1",
            "--set",
            "world.consumers=30000",
            "--set",
            "replicates=20",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(3.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert leftovers == []
    assert np.all([p.name.endswith(".partial") for p in tmp_path.iterdir()])


def test_set_accepts_bare_parameter_names_days_and_none():
    s = load(
        "streamer_banned", ["world.days=40", "owners.count=30", "events.streamer_removed_day=none"]
    )
    assert s.days == 40 and s.params.owners.count == 30
    assert s.params.events.streamer_removed_day is None


def test_a_parameter_at_its_bound_does_not_redraw_the_world():
    from sim.world.model import CommerceModel

    a = CommerceModel(load("hybrid", SMALL + ["consumers.impulsiveness=0.0"]).params)
    b = CommerceModel(load("hybrid", SMALL + ["consumers.impulsiveness=0.1"]).params)
    assert np.array_equal(a.demand.need_rate, b.demand.need_rate)
    assert np.array_equal(a.demand.budget, b.demand.budget)
    assert np.array_equal(a.consumers.trust, b.consumers.trust)


def test_set_name_renames_the_scenario_and_the_name_is_checked():
    assert load("owners", ["name=owners_v2"]).name == "owners_v2"
    with pytest.raises(ScenarioError, match="--set name=../x: name = '../x' is not a plain name"):
        load("owners", ["name=../x"])


def test_a_sweep_file_is_a_scenario_file_with_ranges(tmp_path):
    """What a sweep holds fixed is read exactly as the same scenario file; a range in a
    scenario is an error that points to sweeps."""
    from sim.experiments.sweep import load_sweep

    head = f'extends = "{shipped_dir() / "hybrid.toml"}"\n'
    body = "[world]\nconsumers = 3000\ndays = 12\n[levers]\nowners.count = 20\n"
    vary = "[uncertainties]\npurchase.trust = [1.0, 2.0]\n"
    scenario = write(tmp_path, "s.toml", head + body)
    sweep = write(tmp_path, "w.toml", head + body + vary)
    assert load_sweep(sweep).base.params == load(scenario).params
    ranged = write(tmp_path, "r.toml", head + body + vary)
    with pytest.raises(ScenarioError, match="which a sweep file does"):
        load(ranged)
