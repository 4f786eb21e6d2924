"""The recruitment study (``fishschool recruit``, analysis/recruitment.py): the Gini docked
against closed forms, the wave's losses on a constructed case, rules that share the graph,
the consumers and the budget of owners, arms identical until the wave, the same seed giving
the same tables, the folder the command writes and its bad input.

The study runs in a tiny world (2,000 consumers, 10 owners, 30 days, 2 replicates, the wave
on day 10): a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from analysis.recruitment import (
    MEASURES,
    RUN_VALUES,
    TABLE_COLUMNS,
    RecruitmentError,
    churn_losses,
    earnings_gini,
    plan_study,
    recruitment_study,
    replicate_values,
    run_values,
    study_world,
    summarise,
)
from analysis.stats import mean_ci
from sim.cli import main
from sim.experiments.scenario import load
from sim.world.metrics import gini
from sim.world.recruitment import RULES

CONSUMERS, DAYS, WAVE_DAY, SEED = 2000, 30, 10, 3
TINY = ["--consumers", "2000", "--days", "30", "--replicates", "2", "--wave-day", "10"]
FILES = {
    "recruitment.csv",
    "runs.csv",
    "daily.csv",
    "recruitment.png",
    "recruitment.md",
    "manifest.json",
}


@pytest.fixture(scope="module")
def plan():
    return plan_study(study_world(CONSUMERS, DAYS), replicates=2, seed=SEED, wave_day=WAVE_DAY)


@pytest.fixture(scope="module")
def result(plan):
    """The study in the tiny world, in this process."""
    return recruitment_study(plan, workers=1)


# -- the Gini coefficient ------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_gini_is_zero_for_equal_earnings(n):
    assert gini(np.full(n, 3.5)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 5, 100, 1000])
def test_gini_of_one_earner_of_n_is_n_minus_1_over_n(n):
    x = np.zeros(n)
    x[n // 2] = 42.0
    assert gini(x) == pytest.approx((n - 1) / n, rel=1e-12)


def test_gini_docks_against_the_mean_absolute_difference():
    # [1, 2, 3, 4]: sum over ordered pairs |xi - xj| = 20; / (2 n^2 mean = 80) = 0.25.
    assert gini(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.25, rel=1e-12)
    assert gini(np.array([0.0, 1.0])) == pytest.approx(0.5)
    rng = np.random.default_rng(5)
    for n in (3, 10, 250):
        x = rng.lognormal(0.0, 1.5, n)
        mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean())
        assert gini(x) == pytest.approx(mad, rel=1e-10)
        assert gini(rng.permutation(x) * 17.0) == pytest.approx(gini(x), rel=1e-10)


def test_earnings_gini_reads_the_first_owners_and_is_nan_without_earnings():
    owners = pd.DataFrame({"owner": [0, 1, 2, 3, 4], "earnings": [5.0, 5.0, 0.0, 9.0, 0.0]})
    assert earnings_gini(owners, first=2) == 0.0  # the two the rule chose earn alike
    assert earnings_gini(owners, first=3) == pytest.approx(gini(np.array([5.0, 5.0, 0.0])))
    assert earnings_gini(owners) == pytest.approx(gini(owners.earnings.to_numpy()))
    assert np.isnan(earnings_gini(owners.assign(earnings=0.0)))


# -- the wave's losses and the per-run values, on constructed tables -------------------------
def _constructed():
    """Two rules x two replicates x two arms, 6 days, the wave on day 3, a budget of 2.

    Without the wave the owners sell 10 RMB a day; with it, 10 before day 3 and then 4 (rule
    a) or 7 (rule b), times the replicate (1 or 2). Reach share 0.5 (+0.1 for b) without the
    wave, 0.1 less (a) or 0.05 less (b) with it. Orders 8 per run; owners 0 and 1 are the
    first, 2 a recruit."""
    arms = {"a": ("a", False), "a-wave": ("a", True), "b": ("b", False), "b-wave": ("b", True)}
    summary, ts, owners = [], [], []
    for name, (rule, wave) in arms.items():
        for rep in (0, 1):
            k = rep + 1
            after = {"a": 4.0, "b": 7.0}[rule] if wave else 10.0
            for day in range(6):
                for ch in ("owners", "streamer"):
                    gmv = (10.0 if day < 3 else after) * k if ch == "owners" else 999.0
                    ts.append((name, rep, 100 + rep, day, ch, gmv, 0.0))
            reach = 0.5 + (0.1 if rule == "b" else 0.0)
            reach -= (0.1 if rule == "a" else 0.05) if wave else 0.0
            for metric, value in (
                ("reach_share", reach),
                ("orders", 8.0),
                ("net_gmv", 60.0 * k),
                ("active_owners", 3.0),
            ):
                summary.append((name, rep, 100 + rep, "owners", metric, value))
                summary.append((name, rep, 100 + rep, "streamer", metric, -1.0))
            for o, (e, m) in enumerate(((1.0, 30), (3.0, 50), (50.0, 0))):
                owners.append((name, rep, 100 + rep, o, o, e, m))
    cols = ["scenario", "replicate", "seed"]
    return (
        pd.DataFrame(summary, columns=[*cols, "channel", "metric", "value"]),
        pd.DataFrame(ts, columns=[*cols, "day", "channel", "net_gmv", "reach"]),
        pd.DataFrame(owners, columns=[*cols, "owner", "consumer", "earnings", "members_start"]),
        arms,
    )


def test_run_values_and_losses_on_a_constructed_case():
    summary, ts, owners, arms = _constructed()
    runs = run_values(summary, ts, owners, arms, budget=2, wave_day=3)
    assert list(runs.columns) == ["rule", "wave", "replicate", "seed", "metric", "value"]
    assert set(runs.metric) == set(RUN_VALUES)
    v = runs.set_index(["rule", "wave", "replicate", "metric"])["value"]
    assert v[("a", False, 1, "net_gmv_after_wave_day")] == 60.0  # days 3-5, 10 x 2 a day
    assert v[("a", True, 1, "net_gmv_after_wave_day")] == 24.0  # days 3-5, 4 x 2 a day
    assert v[("b", True, 0, "net_gmv_after_wave_day")] == 21.0
    assert v[("a", False, 0, "orders_per_owner")] == 4.0  # 8 orders, 2 owners budgeted
    assert v[("b", True, 1, "earnings_gini")] == pytest.approx(gini(np.array([1.0, 3.0])))
    assert v[("b", True, 1, "earnings_gini_all")] == pytest.approx(gini(np.array([1, 3, 50.0])))
    assert v[("a", True, 0, "members_start")] == 40.0  # (30 + 50) / 2; the recruit has 0
    assert np.isnan(v[("a", False, 0, "owner_degree")])  # no graph given

    losses = churn_losses(runs).set_index(["rule", "replicate", "metric"])["value"]
    for rep in (0, 1):  # the loss is a share: the same for both replicates
        assert losses[("a", rep, "net_gmv_loss")] == pytest.approx(0.6)  # 1 - 4/10
        assert losses[("b", rep, "net_gmv_loss")] == pytest.approx(0.3)  # 1 - 7/10
        assert losses[("a", rep, "reach_loss")] == pytest.approx(0.1)
        assert losses[("b", rep, "reach_loss")] == pytest.approx(0.05)

    table = summarise(replicate_values(runs)).set_index(["rule", "metric"])
    assert list(table.reset_index().columns) == TABLE_COLUMNS
    b = table.loc[("b", "net_gmv_loss")]
    assert b["mean"] == pytest.approx(0.3) and b["diff"] == pytest.approx(-0.3)  # b minus a
    assert b["baseline"] == "a" and np.isnan(table.loc[("a", "net_gmv_loss"), "diff"])
    assert table.loc[("b", "reach_share"), "diff"] == pytest.approx(0.1)
    assert table.loc[("b", "reach_loss"), "replicates"] == 2


def test_a_run_that_sold_nothing_after_the_wave_day_has_no_loss_share():
    runs = pd.DataFrame(
        {
            "rule": "a",
            "wave": [False, True, False, True],
            "replicate": 0,
            "seed": 1,
            "metric": ["net_gmv_after_wave_day"] * 2 + ["reach_share"] * 2,
            "value": [0.0, 0.0, 0.4, 0.4],
        }
    )
    losses = churn_losses(runs).set_index("metric")["value"]
    assert np.isnan(losses["net_gmv_loss"]) and losses["reach_loss"] == 0.0


# -- the study: shared worlds, shared budget, paired arms ---------------------------------------
def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_rules_share_the_graph_the_consumers_and_the_budget(plan):
    from sim.world.model import CommerceModel

    scenarios = plan.scenarios()
    assert [s.name for s in scenarios] == [n for r in RULES for n in (r, f"{r}-wave")]
    base = _flat(plan.base.params.to_dict())
    worlds = {}
    for s in scenarios:
        changed = {k for k, v in _flat(s.params.to_dict()).items() if v != base[k]}
        assert changed <= {"owners.recruitment", "events.churn_wave_day"}
        assert s.params.owners.count == plan.budget == 10
        if s.name in RULES:
            worlds[s.name] = CommerceModel(s.params.with_overrides({"seed": plan.seeds[1]}))
    ref = worlds["random"]
    for rule, model in worlds.items():
        assert model.graph.nnz > 0
        assert np.array_equal(model.graph.indptr, ref.graph.indptr), rule
        assert np.array_equal(model.graph.indices, ref.graph.indices), rule
        assert np.array_equal(model.consumers.follows, ref.consumers.follows), rule
        assert np.array_equal(model.consumers.preference, ref.consumers.preference), rule
        assert model.owners.m == plan.budget == np.unique(model.owners.node).size
    degree = np.diff(ref.graph.indptr)
    assert degree[worlds["degree"].owners.node].min() >= np.sort(degree)[-plan.budget]
    # Common random numbers: a rule's own draws come from a stream of its own, so the k-th
    # first owner, whoever she is, gets the same groups, skill and posting activity.
    for rule, model in worlds.items():
        if rule != "random":
            assert not np.array_equal(model.owners.node, ref.owners.node), rule
        assert np.array_equal(model.owners.group_owner, ref.owners.group_owner), rule
        assert np.array_equal(model.owners.skill0, ref.owners.skill0), rule
        assert np.array_equal(model.owners.activity, ref.owners.activity), rule


def test_arms_are_the_same_run_until_the_wave(result):
    d = result.daily.set_index(["rule", "wave", "day"]).sort_index()
    for rule in RULES:
        before = d.loc[(rule, False)].loc[: WAVE_DAY - 1]
        pd.testing.assert_frame_equal(before, d.loc[(rule, True)].loc[: WAVE_DAY - 1])
        after = d.loc[(rule, False)].loc[WAVE_DAY:]
        assert not after.equals(d.loc[(rule, True)].loc[WAVE_DAY:])


def test_the_table_has_every_rule_and_measure_with_paired_differences(result):
    table, values = result.table, result.values
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == len(RULES) * len(MEASURES)
    assert (table.replicates[table.metric != "net_gmv_loss"] == 2).all()
    assert table[table.rule == "random"]["diff"].isna().all()
    wide = values.pivot_table(index=["metric", "replicate"], columns="rule", values="value")
    for rule in RULES[1:]:
        d = (wide[rule] - wide["random"]).loc["reach_share"].to_numpy()
        row = table[(table.rule == rule) & (table.metric == "reach_share")].iloc[0]
        assert (row["diff"], row["diff_low"], row["diff_high"]) == pytest.approx(mean_ci(d))
    v = values.set_index(["rule", "metric", "replicate"])["value"]
    for rep in (0, 1):  # the best connected are better connected than random owners
        assert v[("degree", "owner_degree", rep)] > v[("random", "owner_degree", rep)]
        assert 0.0 <= v[("celf", "friend_overlap", rep)] < 1.0
    assert ((values.metric == "reach_share") <= 1).all()


# -- the command -------------------------------------------------------------------------------
def test_cli_writes_every_file_and_the_same_seed_gives_the_same_tables(tmp_path, result, capsys):
    out = tmp_path / "recruit"
    args = [*TINY, "--seed", str(SEED), "--rules", "random", "celf", "--workers", "1"]
    assert main(["recruit", *args, "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert {p.name for p in out.iterdir()} == FILES
    # A run of two of the rules on the same seed is, row for row, the full study's.
    runs = pd.read_csv(out / "runs.csv")
    mine = result.runs[result.runs.rule.isin(["random", "celf"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(runs, mine, check_dtype=False, rtol=1e-12)
    table = pd.read_csv(out / "recruitment.csv")
    full = result.table[result.table.rule.isin(["random", "celf"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(table, full, check_dtype=False, rtol=1e-12)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == "fishschool" and manifest["content"] == "recruitment"
    assert manifest["rules"] == ["random", "celf"] and manifest["budget"] == 10
    assert manifest["seed"] == SEED and manifest["seeds"] == result.plan.seeds
    assert manifest["wave"] == {"day": WAVE_DAY, "share": 0.5}
    assert {"git_commit", "versions", "command", "started", "world"} <= set(manifest)
    report = (out / "recruitment.md").read_text()
    assert "| celf |" in report and "recruitment.png" in report and "minus random" in report
    assert (out / "recruitment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_scenario_brings_its_own_wave(tmp_path):
    path = tmp_path / "wave.toml"
    path.write_text(
        'extends = "owners"\n[world]\nconsumers = 2000\ndays = 30\n'
        "[levers]\nowners.count = 10\n[events]\nchurn_wave_day = 12\nchurn_wave_share = 0.3\n"
    )
    plan = plan_study(load(path), rules=["degree", "random"], replicates=2)
    assert (plan.wave_day, plan.wave_share, plan.rules[0]) == (12, 0.3, "degree")
    assert plan_study(load(path), replicates=2, wave_day=5, wave_share=1.0).wave_day == 5
    params = {s.name: s.params for s in plan.scenarios()}
    assert params["degree"].events.churn_wave_day is None
    assert params["degree-wave"].events.churn_wave_day == 12


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rules", "random", "best"], "--rules best: not a recruitment rule; allowed: random"),
        (["--rules", "celf"], "--rules celf: give two or more distinct rules"),
        (["--rules", "celf", "celf"], "give two or more distinct rules"),
        (["--replicates", "1"], "--replicates 1 is outside the allowed range [2, "),
        (["--wave-day", "200"], "--wave-day 200 is not within the simulated days (days 0 to 119"),
        (["--days", "20", "--wave-day", "25"], "--wave-day 25 is not within the simulated days"),
        (["--wave-share", "0"], "--wave-share 0 is outside the allowed range (0, 1]"),
        (["--wave-share", "x"], "--wave-share x is not a number"),
        (["--owners", "0"], "owners.count = 0: the budget must be at least one owner"),
        (["--set", "channels.owners=false"], "channels.owners = false: without owners"),
        (["--set", "graph.topology=well_mixed"], "need a social graph"),
        (["no_such_scenario"], "no_such_scenario: no such scenario file or shipped scenario"),
        (["--set", "owners.bogus=1"], "unknown parameter 'owners.bogus'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)  # a default results/recruit-... would show here
    before = _tree(tmp_path)
    assert main(["recruit", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fishschool: error: ")
    assert message in err
    assert _tree(tmp_path) == before


def test_cli_refuses_an_existing_folder_before_running(tmp_path, capsys):
    out = tmp_path / "recruit"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["recruit", *TINY, "--workers", "1", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert _tree(out) == {"notes.txt"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rules": ["random", "degree"], "replicates": 1}, "--replicates 1"),
        ({"rules": ["random", "degree"], "wave_day": 30}, "--wave-day 30"),
        ({"rules": ["random", "degree"]}, r"the churn wave's day 30 \(the default; "),
        ({"wave_day": 10, "wave_share": 0.0}, "--wave-share 0.0"),
        ({"rules": ("random", "Degree")}, "--rules Degree"),
    ],
)
def test_plan_refuses_bad_studies(kwargs, message):
    with pytest.raises(RecruitmentError, match=message):
        plan_study(study_world(CONSUMERS, DAYS), **kwargs)
