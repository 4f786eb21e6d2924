"""The scale study (``fishschool scale``, analysis/scale.py): the table, the verdicts, the same
numbers serially and in parallel, the folder it writes and its bad input.

The study runs at tiny sizes (2,000 and 4,000 consumers, 30 days, 2 replicates): a few
seconds in all.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import analysis.scale
import sim.experiments.resources
from analysis.scale import (
    RATE_METRICS,
    TABLE_COLUMNS,
    check_plan,
    default_replicates,
    scale_dependence,
    scale_runs,
    scale_study,
    size_seeds,
    summarise_scale,
    verdicts,
    world,
)
from sim.cli import main
from sim.world.metrics import METRICS
from sim.world.params import ParameterError

SIZES = [2000, 4000]
REPS = {2000: 2, 4000: 2}
DAYS = 30
TINY = ["--sizes", "2000,4000", "--days", "30", "--replicates", "2", "--workers", "1"]
FILES = {"scale.csv", "dependence.csv", "runs.csv", "scale.png", "scale.md", "manifest.json"}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """The study at the tiny sizes, run in this process."""
    return scale_study(SIZES, replicates=REPS, seed=3, days=DAYS, workers=1)


# -- scale_dependence on a table whose answer is known -----------------------------------------
def _synthetic() -> pd.DataFrame:
    """Metric ``flat`` holds at every size; ``drifts`` climbs until 1M consumers and then
    holds; ``noisy`` is 30% off at 10k, but its interval there is wide; ``absent`` is not
    measured at the largest size."""
    sizes = [10_000, 100_000, 1_000_000, 10_000_000]
    rows = []
    flats = [0.1, 0.101, 0.0995, 0.1]
    drifts = [0.05, 0.08, 0.099, 0.1]
    noisies = [0.13, 0.1, 0.1, 0.1]
    for n, flat, drift, noisy in zip(sizes, flats, drifts, noisies, strict=True):
        rows.append((n, "owners", "flat", flat, flat - 0.001, flat + 0.001, 4))
        rows.append((n, "owners", "drifts", drift, drift - 0.001, drift + 0.001, 4))
        wide = 0.05 if n == 10_000 else 0.001
        rows.append((n, "streamer", "noisy", noisy, noisy - wide, noisy + wide, 4))
        rows.append((n, "all", "absent", np.nan if n == sizes[-1] else 0.2, np.nan, np.nan, 0))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def test_dependence_tells_a_stable_rate_from_a_scale_dependent_one():
    dep = scale_dependence(_synthetic())
    v = verdicts(dep).set_index("metric")
    assert v.loc["flat", "verdict"] == "stable"
    assert v.loc["flat", "stable_from"] == 10_000
    assert v.loc["drifts", "verdict"] == "depends on scale"
    assert v.loc["drifts", "stable_from"] == 1_000_000  # 0.099: within 5% of 0.100
    assert v.loc["noisy", "verdict"] == "stable"  # +30%, but its interval holds 0.1
    assert v.loc["noisy", "inconclusive_at"] == "10000"
    assert v.loc["absent", "verdict"] == "not measured"
    assert pd.isna(v.loc["absent", "stable_from"])

    drifts = dep[dep.metric == "drifts"].set_index("size")
    assert drifts.loc[10_000, "rel_diff"] == pytest.approx(-0.5)
    assert drifts.loc[10_000, "reference"] == pytest.approx(0.1)
    assert not drifts.loc[10_000, "overlap"] and not drifts.loc[10_000, "agrees"]
    assert drifts.loc[1_000_000, "overlap"] and drifts.loc[1_000_000, "agrees"]
    assert drifts.loc[10_000_000, "rel_diff"] == 0.0


def test_stable_from_needs_every_larger_size_to_agree():
    """A size that agrees by chance below one that does not is not where stability starts."""
    t = _synthetic()
    t = t[t.metric == "drifts"].copy()
    t.loc[t["size"] == 10_000, ["mean", "ci_low", "ci_high"]] = [0.1, 0.099, 0.101]
    v = verdicts(scale_dependence(t)).iloc[0]
    assert v.verdict == "depends on scale" and v.stable_from == 1_000_000


def test_a_zero_reference_and_a_single_size():
    t = pd.DataFrame(
        [(10, "all", "z", 0.0, 0.0, 0.0, 2), (100, "all", "z", 0.0, 0.0, 0.0, 2)],
        columns=TABLE_COLUMNS,
    )
    assert verdicts(scale_dependence(t)).verdict.tolist() == ["stable"]
    one = _synthetic()
    one = one[one["size"] == 10_000_000]
    v = verdicts(scale_dependence(one))
    assert set(v.verdict) == {"stable", "not measured"}


# -- the plan ----------------------------------------------------------------------------------
def test_replicates_halve_with_every_tenfold_size_down_to_four():
    assert [default_replicates(n) for n in (10**4, 10**5, 10**6, 10**7)] == [16, 8, 4, 4]
    assert check_plan([10**7, 10**4]) == {10**4: 16, 10**7: 4}


@pytest.mark.parametrize(
    "sizes, reps, message",
    [
        ([], None, "at least one"),
        ([1, 2000], None, "[2, 50000000]"),
        ([2000, 2000], None, "twice"),
        ([2000], {2000: 1}, "--replicates 1"),
        ([2000], {4000: 2}, "not studied"),
    ],
)
def test_bad_plans_are_refused(sizes, reps, message):
    with pytest.raises(ParameterError, match=message.replace("[", r"\[")):
        check_plan(sizes, reps)


def test_owners_scale_with_consumers_and_sizes_draw_their_own_seeds():
    assert world(10_000).params.owners.count == 50
    assert world(10_000_000).params.owners.count == 50_000
    assert world(4000).params.streamer.follower_share == world(10**6).params.streamer.follower_share
    assert size_seeds(1, 2000, 2) != size_seeds(1, 4000, 2)
    assert size_seeds(1, 2000, 2) == size_seeds(1, 2000, 4)[:2]


def test_every_rate_is_a_declared_share_ratio_or_index():
    assert {"conversion", "return_rate", "reach_share", "repeat_purchase_rate"} <= set(RATE_METRICS)
    assert {"profit_per_net_rmb", "owner_earnings_gini", "top_seller_share"} <= set(RATE_METRICS)
    assert "reach_day_half" not in RATE_METRICS and "orders" not in RATE_METRICS
    for name in RATE_METRICS:
        m = METRICS[name]
        assert m.timing == "summary" and (m.is_share or m.denominator or m.unit == "index")


# -- the study at tiny sizes -------------------------------------------------------------------
def test_the_table_has_every_size_channel_and_rate_with_intervals(table):
    assert list(table.columns) == TABLE_COLUMNS
    assert sorted(table["size"].unique()) == SIZES
    assert set(table.metric) == set(RATE_METRICS)
    assert set(table.channel) == {"owners", "streamer", "conventional", "all"}
    assert not table.duplicated(["size", "channel", "metric"]).any()
    both = table[table.replicates == 2]
    assert len(both) > 0.8 * len(table)
    assert (both.ci_low <= both["mean"] + 1e-12).all()
    assert (both["mean"] <= both.ci_high + 1e-12).all()
    # repeat purchase follows buyers for 90 days: a 30-day run cannot measure it
    repeat = table[table.metric == "repeat_purchase_rate"]
    assert repeat["mean"].isna().all() and (repeat.replicates == 0).all()
    # rates defined for one channel only appear there
    assert set(table[table.metric == "vetted_share"].channel) == {"streamer", "all"}
    assert set(table[table.metric == "top_seller_share"].channel) == {"all"}


def test_same_seed_same_table_serial_or_in_two_processes(table):
    again = scale_study(SIZES, replicates=REPS, seed=3, days=DAYS, workers=1)
    pd.testing.assert_frame_equal(again, table)
    parallel = scale_study(SIZES, replicates=REPS, seed=3, days=DAYS, workers=2)
    pd.testing.assert_frame_equal(parallel, table)
    other = scale_study([2000], replicates={2000: 2}, seed=4, days=DAYS, workers=1)
    mine = table[table["size"] == 2000].reset_index(drop=True)
    assert not np.allclose(other["mean"], mine["mean"], equal_nan=True)


def test_runs_a_few_at_a_time_give_the_same_numbers(table):
    """A size limited to one run at a time (memory) runs in batches: same table."""
    progress: list[tuple[int, int]] = []
    runs = scale_runs(
        SIZES,
        replicates=REPS,
        seed=3,
        days=DAYS,
        workers=1,
        at_once={4000: 1},
        progress=lambda d, t: progress.append((d, t)),
    )
    pd.testing.assert_frame_equal(summarise_scale(runs), table)
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert runs.groupby("size").replicate.nunique().to_dict() == REPS


# -- the command -------------------------------------------------------------------------------
def test_cli_writes_every_file(tmp_path, table, capsys):
    out = tmp_path / "scale"
    assert main(["scale", *TINY, "--seed", "3", "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} == FILES
    written = pd.read_csv(out / "scale.csv")
    pd.testing.assert_frame_equal(written, table, check_dtype=False, rtol=1e-12)
    dep = pd.read_csv(out / "dependence.csv")
    assert {"rel_diff", "overlap", "verdict", "stable_from"} <= set(dep.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == "fishschool" and manifest["content"] == "scale"
    assert manifest["sizes"] == SIZES and manifest["replicates"] == {"2000": 2, "4000": 2}
    assert manifest["seed"] == 3 and manifest["days"] == DAYS
    assert manifest["seeds"]["4000"] == size_seeds(3, 4000, 2)
    assert {"git_commit", "versions", "command", "started", "finished"} <= set(manifest)
    report = (out / "scale.md").read_text()
    assert "## Headline rates" in report and "| 4,000 |" in report and "scale.png" in report
    assert (out / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == ""


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "10,abc"], "--sizes 10,abc: abc is not a whole number"),
        (["--sizes", "1,2000"], "--sizes 1,2000: 1 is outside the allowed range [2, 50000000]"),
        (["--sizes", "2000,2000"], "--sizes 2000,2000 is not a list of distinct sizes"),
        (["--sizes", "2000,"], "--sizes 2000, is not a list of sizes"),
        (["--sizes", "2000", "--replicates", "1"], "--replicates 1 is outside the allowed"),
        (["--sizes", "2000", "--days", "0"], "--days 0: world.days = 0 is outside"),
        (["--sizes", "2000", "--seed", "-1"], "--seed -1"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)  # a default results/scale would show here
    before = _tree(tmp_path)
    assert main(["scale", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fishschool: error: ")
    assert message in err
    assert _tree(tmp_path) == before


def test_cli_refuses_a_world_that_does_not_fit_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sim.experiments.resources, "available_bytes", lambda: 64 * 2**20)
    out = tmp_path / "scale"
    assert main(["scale", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "memory" in err and "2,000 consumers" in err
    assert not out.exists()


def test_cli_runs_a_large_size_fewer_at_a_time(tmp_path, monkeypatch, capsys):
    """Memory for two small worlds side by side but one large one: a note, and the large size
    goes one run at a time (the runs themselves happen here, serially, to keep the test fast)."""
    budget = sim.experiments.resources.run_bytes(world(2000, DAYS).params) * 2
    monkeypatch.setattr(sim.experiments.resources, "available_bytes", lambda: budget + 1)
    seen: dict = {}
    real = analysis.scale.scale_runs

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **{**kwargs, "executor": None, "workers": 1})

    monkeypatch.setattr(analysis.scale, "scale_runs", spy)
    out = tmp_path / "scale"
    args = ["scale", "--sizes", "2000,4000", "--days", "5", "--replicates", "2", "--workers", "2"]
    assert main([*args, "--out", str(out)]) == 0
    assert seen["at_once"] == {4000: 1} and seen["workers"] == 2
    err = capsys.readouterr().err
    assert "note: 4,000 consumers: 1 run(s) at a time" in err
    assert "2,000 consumers: 1" not in err


def test_cli_refuses_an_existing_folder_before_running(tmp_path, capsys):
    out = tmp_path / "scale"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["scale", *TINY, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["scale", *TINY, "--out", str(out), "--force"]) == 2  # not a fishschool folder
    assert _tree(out) == {"notes.txt"}


def test_cli_force_replaces_its_own_folder(tmp_path):
    out = tmp_path / "scale"
    args = ["scale", "--sizes", "2000", "--days", "5", "--replicates", "2", "--workers", "1"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert main([*args, "--seed", "9", "--out", str(out), "--quiet", "--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 9
