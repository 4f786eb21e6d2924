"""fishschool explain: Shapley decomposition of a verdict into mechanism groups."""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import analysis.explain as ex
from analysis.explain import (
    CHANNEL_SWAPS,
    MECHANISMS,
    STRUCTURE,
    TOTAL,
    ExplainError,
    coalitions,
    explain_channels,
    explain_scenarios,
    format_explanation,
    shapley,
)
from sim.cli import main
from sim.experiments.experiment import run_experiment
from sim.experiments.scenario import load, shipped_dir
from sim.world.params import field_of

SMALL = ["world.consumers=1500", "levers.owners.count=30", "world.days=30"]
R = 2
SELECTION = "platform.selection_strictness=0.0"
SLOT_FEE = "streamer.slot_fee=0.0"  # money only: no behaviour changes within the run


def scenario(*sets: str, name: str = "hybrid"):
    return load(name, [*SMALL, *sets], replicates=R)


def parts_and_total(table: pd.DataFrame):
    for (metric, channel), g in table.groupby(["metric", "channel"], sort=False):
        parts = g[g.part != TOTAL]
        total = g[g.part == TOTAL].iloc[0]
        yield metric, channel, parts, total


@pytest.fixture(scope="module")
def two_groups():
    return explain_scenarios(scenario(), scenario(SELECTION, SLOT_FEE))


@pytest.fixture(scope="module")
def channel_mode():
    return explain_channels(scenario(), ("owners", "streamer"))


# ----------------------------------------------------------------------------------------------
# The Shapley function on games with known answers
# ----------------------------------------------------------------------------------------------
def test_additive_game_gives_each_player_its_own_worth():
    w = {"a": 1.5, "b": -2.0, "c": 4.0}
    phi = shapley(list(w), lambda s: sum(w[p] for p in s))
    assert phi == pytest.approx(w, abs=1e-15)


def test_glove_game():
    # a and b hold a left glove each, c the right one; a pair is worth 1.
    phi = shapley(["a", "b", "c"], lambda s: float("c" in s and bool(s & {"a", "b"})))
    assert phi == pytest.approx({"a": 1 / 6, "b": 1 / 6, "c": 2 / 3}, abs=1e-15)


def test_shapley_axioms_on_a_random_vector_game():
    rng = np.random.default_rng(3)
    players = list("abcde")
    worth = {s: rng.normal(size=4) for s in coalitions(players)}
    worth[frozenset()] = np.zeros(4) + 0.7
    phi = shapley(players, worth)
    total = worth[frozenset(players)] - worth[frozenset()]
    np.testing.assert_allclose(sum(phi.values()), total, rtol=1e-12, atol=1e-12)
    # a null player (never changes the worth) gets 0; two symmetric players the same
    null = shapley(["x", "y", "n"], lambda s: len(s - {"n"}) ** 2)
    assert null["n"] == 0 and null["x"] == pytest.approx(null["y"])
    assert shapley([], {frozenset(): 1.0}) == {}


def test_coalitions_are_all_subsets_once():
    cs = coalitions(["a", "b", "c"])
    assert len(cs) == len(set(cs)) == 8
    assert cs[0] == frozenset() and cs[-1] == frozenset("abc")


# ----------------------------------------------------------------------------------------------
# Declarations
# ----------------------------------------------------------------------------------------------
def test_every_mechanism_parameter_is_real_and_in_one_group_only():
    names = [n for group in MECHANISMS.values() for n in group]
    for name in names:
        field_of(name)  # raises for a name that is not a parameter
    assert len(names) == len(set(names)), "a parameter sits in two groups"
    assert not {ex.OTHER, TOTAL, STRUCTURE} & set(MECHANISMS)
    assert ex.check_declarations() == []


def test_every_channel_swap_names_real_parameters_and_groups():
    for (a, b), groups in CHANNEL_SWAPS.items():
        assert a != b and {a, b} <= {"owners", "streamer", "conventional"}
        for group, swaps in groups.items():
            assert group in MECHANISMS
            for target, source in swaps:
                field_of(target)
                if isinstance(source, str):
                    field_of(source)


# ----------------------------------------------------------------------------------------------
# Scenario mode
# ----------------------------------------------------------------------------------------------
def test_parts_add_up_to_the_total(two_groups):
    assert list(two_groups.players) == ["selection", "price_terms"]
    checked = 0
    for _, _, parts, total in parts_and_total(two_groups.table):
        assert total.value == total.end - total.start
        if np.isfinite(total.value):
            assert parts.value.sum() == pytest.approx(total.value, rel=1e-12, abs=1e-15)
            checked += 1
    assert checked == 3 * 4


def test_start_and_end_are_the_plain_runs_of_a_and_b(two_groups):
    """The empty coalition is A's run and the grand coalition B's, seed for seed."""
    a, b = two_groups.scenarios
    plain = run_experiment([a], replicates=R).summary, run_experiment([b], replicates=R).summary
    for coalition, summary in zip(("none", "selection+price_terms"), plain, strict=True):
        runs = two_groups.runs[two_groups.runs.coalition == coalition]
        merged = runs.merge(summary, on=["replicate", "seed", "channel", "metric"])
        assert len(merged) == len(runs) == R * 3 * 4
        np.testing.assert_array_equal(merged.value_x.to_numpy(), merged.value_y.to_numpy())
    means = plain[1].groupby(["channel", "metric"]).value.mean()
    t = two_groups.table[two_groups.table.part == TOTAL].set_index(["channel", "metric"])
    for key, end in t.end.items():
        np.testing.assert_equal(end, means[key])


def test_a_group_without_effect_on_a_metric_gets_zero(two_groups):
    t = two_groups.table
    fee = t[(t.part == "price_terms") & t.metric.isin(["return_rate", "conversion"])]
    assert np.nanmax(np.abs(fee.value.to_numpy())) < 1e-12
    profit = t[(t.part == "price_terms") & (t.metric == "profit_per_order")]
    assert profit.set_index("channel").value["streamer"] > 0  # no slot fee: more profit
    assert profit.set_index("channel").value["owners"] == 0


def test_one_group_differing_takes_everything():
    e = explain_scenarios(scenario(), scenario(SELECTION), metrics=["return_rate", "conversion"])
    assert list(e.players) == ["selection"]
    assert e.players["selection"] == {"platform.selection_strictness": (0.3, 0.0)}
    assert set(e.table.part) == {"selection", TOTAL}
    for _, _, parts, total in parts_and_total(e.table):
        assert list(parts.part) == ["selection"]
        np.testing.assert_equal(parts.value.iloc[0], total.value)
    assert e.table[e.table.part == TOTAL].value.abs().max() > 0  # selection matters


def test_a_scenario_against_itself_has_no_players_and_zero_totals():
    a = scenario()
    e = explain_scenarios(a, a, metrics=["return_rate"])
    assert e.players == {}
    assert set(e.table.part) == {TOTAL}
    values = e.table.value.to_numpy()
    assert np.all((values == 0) | np.isnan(values)) and np.any(values == 0)
    assert e.timings["runs"] == R  # the one coalition runs once per replicate
    assert "nothing to explain" in format_explanation(e)


def test_an_executor_gives_the_same_numbers():
    a, b = scenario(), scenario(SELECTION)
    serial = explain_scenarios(a, b, metrics=["return_rate"])
    done = []
    with ThreadPoolExecutor(2) as pool:
        pooled = explain_scenarios(
            a, b, metrics=["return_rate"], executor=pool, progress=lambda d, t: done.append((d, t))
        )
    pd.testing.assert_frame_equal(serial.table, pooled.table)
    assert done[-1] == (2 * R, 2 * R)


def test_different_world_sizes_are_refused():
    with pytest.raises(ExplainError, match="world size or days"):
        explain_scenarios(scenario(), load("hybrid", [*SMALL, "world.consumers=2000"]))


def test_more_than_eight_groups_are_refused(monkeypatch):
    params = [
        "owners.knowledge",
        "owners.learning_rate",
        "owners.listening",
        "owners.pick_sharpness",
        "owners.advice",
        "platform.live_2b_per_week",
        "platform.live_2b_skill_gain",
        "platform.selection_noise",
        "platform.selection_strictness",
    ]
    monkeypatch.setattr(ex, "MECHANISMS", {f"g{i}": (p,) for i, p in enumerate(params)})
    monkeypatch.setattr(ex, "_run_coalitions", lambda *a, **k: pytest.fail("ran"))
    a = scenario()
    b = scenario(*(f"{p}=0.01" for p in params))
    with pytest.raises(ExplainError, match="9 mechanism groups differ.*fewer groups"):
        explain_scenarios(a, b)


def test_unknown_metric_and_channel_are_refused():
    with pytest.raises(ExplainError, match="unknown metric; allowed: .*return_rate"):
        explain_scenarios(scenario(), scenario(), metrics=["returns_rate"])
    with pytest.raises(ExplainError, match="unknown channel; allowed: owners, streamer"):
        explain_scenarios(scenario(), scenario(), channels=["whale"])


# ----------------------------------------------------------------------------------------------
# Channel mode
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_channel_mode_parts_and_structure_add_up_to_the_gap(channel_mode):
    e = channel_mode
    assert list(e.players) == [g for g in MECHANISMS if g in CHANNEL_SWAPS[("owners", "streamer")]]
    t = e.table
    assert set(t.channel) == {"owners - streamer"}
    assert list(t.part.unique()) == [*e.players, STRUCTURE, TOTAL]
    for metric, _, parts, total in parts_and_total(t):
        assert total.value == pytest.approx(total.end - total.start, rel=1e-12)
        assert parts.value.sum() == pytest.approx(total.value, rel=1e-12, abs=1e-15), metric
    # start and end are the streamer's and the owners' metric in the unswapped runs
    none = e.values[e.values.coalition == "none"].set_index(["channel", "metric"]).value
    first = t.drop_duplicates("metric").set_index("metric")
    for m in e.metrics:
        assert first.loc[m, "start"] == none[("streamer", m)]
        assert first.loc[m, "end"] == none[("owners", m)]
    assert len(e.coalitions) == 2 ** len(e.players)
    assert "structure" in format_explanation(e)


def test_channel_mode_needs_both_channels_and_a_declared_pair():
    with pytest.raises(ExplainError, match="channels.streamer = false"):
        explain_channels(scenario(name="owners"), ("owners", "streamer"))
    with pytest.raises(ExplainError, match="no counterfactual swaps are declared.*owners streamer"):
        explain_channels(scenario(), ("streamer", "conventional"))
    with pytest.raises(ExplainError, match="two different channels"):
        explain_channels(scenario(), ("owners", "owners"))


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def lax(tmp_path):
    path = tmp_path / "lax.toml"
    hybrid = shipped_dir() / "hybrid.toml"
    path.write_text(f'extends = "{hybrid}"\n[levers]\nplatform.selection_strictness = 0.0\n')
    return path


SIZE = ["--consumers", "1500", "--owners", "30", "--days", "20", "--workers", "1"]


def test_cli_writes_table_runs_manifest_and_figure(tmp_path, capsys):
    out = tmp_path / "x"
    args = ["explain", "hybrid", str(lax(tmp_path)), *SIZE, "--replicates", "2", "--out", str(out)]
    assert main([*args, "--channel", "owners", "all", "--metric", "return_rate"]) == 0
    table = pd.read_csv(out / "explain.csv")
    assert list(table.columns) == ex.TABLE_COLUMNS
    assert set(table.channel) == {"owners", "all"} and set(table.metric) == {"return_rate"}
    assert set(table.part) == {"selection", TOTAL}
    assert (out / "explain.png").stat().st_size > 0
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs.coalition) == {"none", "selection"} and len(runs.seed.unique()) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "scenarios" and manifest["replicates"] == 2
    assert manifest["players"] == {"selection": {"platform.selection_strictness": [0.3, 0.0]}}
    assert [s["name"] for s in manifest["scenarios"]] == ["hybrid", "lax"]
    assert manifest["versions"]["fishschool"] and manifest["command"][0] == "fishschool"
    printed = capsys.readouterr().out
    assert "selection" in printed and "return_rate" in printed and "total" in printed


@pytest.mark.slow
def test_cli_channel_mode(tmp_path, capsys):
    out = tmp_path / "x"
    args = ["explain", "hybrid", "--channels", "owners", "streamer", *SIZE, "--replicates", "1"]
    assert main([*args, "--metric", "conversion", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "explain.csv")
    assert set(table.part) == {*CHANNEL_SWAPS[("owners", "streamer")], STRUCTURE, TOTAL}
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hybrid", "hybrid", "--metric", "return"], "--metric return: unknown metric; allowed:"),
        (["hybrid", "hybrid", "--channel", "whale"], "--channel whale: unknown channel; allowed:"),
        (["hybrid", "hybrid", "--replicates", "0"], "replicates = 0 is outside the allowed range"),
        (["hybrid", "hybrid", "--workers", "0"], "--workers 0 is outside the allowed range"),
        (["hybrid", "hybrid", "--consumers", "1"], "world.consumers = 1 is outside the allowed"),
        (["hybrid"], "explain takes two scenarios (A B)"),
        (["hybrid", "owners", "streamer"], "explain takes two scenarios"),
        (["hybrid", "nowhere"], "nowhere: no such scenario file"),
        (["hybrid", "hybrid", "--channels", "owners", "streamer"], "takes one scenario, got 2"),
        (["owners", "--channels", "owners", "streamer"], "channels.streamer = false"),
        (["hybrid", "--channels", "streamer", "owners"], "no counterfactual swaps are declared"),
        (["hybrid", "--channels", "owners", "whale"], "give two different channels"),
        (["hybrid", "--channels", "owners", "streamer", "--channel", "all"], "--channel is for"),
        (["hybrid", "BIG"], "differ in world size or days"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    big = tmp_path / "big.toml"
    big.write_text(f'extends = "{shipped_dir() / "hybrid.toml"}"\n[world]\nconsumers = 3000\n')
    args = [str(big) if a == "BIG" else a for a in args]
    out = tmp_path / "x"
    size = [] if str(big) in args or "--consumers" in args else ["--consumers", "1500"]
    assert main(["explain", *args, *size, "--owners", "30", "--days", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fishschool: error: ") and message in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml"]  # no folder, no partial


def test_cli_refuses_an_existing_folder_before_running(tmp_path, capsys, monkeypatch):
    out = tmp_path / "x"
    out.mkdir()
    monkeypatch.setattr(ex, "_run_coalitions", lambda *a, **k: pytest.fail("ran"))
    assert main(["explain", "hybrid", "hybrid", *SIZE, "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_every_pair_of_players_is_a_coalition_label():
    # labels keep the players' order, so the coalition table reads the same every time
    players = ["selection", "fit", "trust"]
    labels = {ex._label(s, players) for s in coalitions(players)}
    assert "none" in labels and "selection+fit+trust" in labels
    assert len(labels) == 2 ** len(players)
    assert all(
        "+".join(p for p in players if p in c) in labels
        for n in range(1, 4)
        for c in itertools.combinations(players, n)
    )


def test_api_explain_returns_the_table_and_plots_it(tmp_path):
    from analysis import api

    sets = {"world.consumers": 1500, "levers.owners.count": 30, "world.days": 20}
    table = api.explain(
        "hybrid", str(lax(tmp_path)), channel="owners", metrics=["return_rate"], sets=sets
    )
    assert list(table.columns) == ex.TABLE_COLUMNS
    assert list(table.part) == ["selection", TOTAL] and set(table.channel) == {"owners"}
    assert table.attrs["start_label"] == "hybrid" and table.attrs["end_label"] == "lax"
    fig = api.plot_explain(table)
    assert len(fig.axes) == 1
    with pytest.raises(ExplainError, match="explain takes two scenarios"):
        api.explain("hybrid")


# ----------------------------------------------------------------------------------------------
# compare --explain: the explanation as part of the comparison's results folder and report
# ----------------------------------------------------------------------------------------------
COMPARE = ["--consumers", "1500", "--owners", "30", "--days", "30", "--replicates", "2"]


def section(md: str) -> str:
    return md[md.index("## Why they differ") : md.index("## Figures")]


@pytest.mark.slow
def test_compare_explain_adds_channel_mode_and_the_report_section(tmp_path, capsys):
    out = tmp_path / "c"
    args = ["compare", "hybrid", "owners", "--explain", *COMPARE, "--workers", "1"]
    assert main([*args, "--out", str(out)]) == 0
    # channel mode for hybrid (owners and streamer both sell), none for owners
    assert [p.name for p in (out / "explain").iterdir()] == ["hybrid"]
    folder = out / "explain" / "hybrid"
    files = {"explain.csv", "runs.csv", "manifest.json", "explain.png"}
    assert files <= {p.name for p in folder.iterdir()}
    table = pd.read_csv(folder / "explain.csv")
    assert set(table.part) == {*CHANNEL_SWAPS[("owners", "streamer")], STRUCTURE, TOTAL}
    assert set(table.metric) == set(ex.DEFAULT_METRICS)
    # the comparison's seeds: the unswapped coalition is the comparison's hybrid, run for run
    manifest = json.loads((folder / "manifest.json").read_text())
    compared = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "channels" and manifest["seeds"] == compared["seeds"]
    # stamped like a folder of fishschool explain, so --force would know it as one
    assert (manifest["tool"], manifest["content"]) == ("fishschool", "explanation")
    runs = pd.read_csv(folder / "runs.csv")
    summary = pd.read_csv(out / "summary.csv")
    none = runs[runs.coalition == "none"]
    merged = none.merge(summary[summary.scenario == "hybrid"], on=["seed", "channel", "metric"])
    assert len(merged) == len(none) == R * 4 * len(ex.DEFAULT_METRICS)
    np.testing.assert_array_equal(merged.value_x.to_numpy(), merged.value_y.to_numpy())
    # the report: after the side-by-side table, the reading, the parts table and the figure
    md = (out / "report.md").read_text()
    assert md.index("## Side by side") < md.index("## Why they differ") < md.index("## Figures")
    why = section(md)
    assert "Shapley" in why and "common random numbers" in why and "**structure**" in why
    assert "| metric | streamer (start) | selection |" in why and "| return_rate | " in why
    assert " ±" in why and "(= owners.discount)" in why
    assert "![Waterfall: hybrid](explain/hybrid/explain.png)" in why
    page = (out / "report.html").read_text()
    assert "<h2>Why they differ</h2>" in page and "<b>structure</b>" in page
    assert page.count("data:image/png") == len(list((out / "figures").glob("*.png"))) + 1
    printed = capsys.readouterr().out
    assert "in hybrid: exact Shapley values" in printed and "structure" in printed
    # fishschool report redraws the same report, section included
    (out / "report.md").unlink()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == md
    assert "<h2>Why they differ</h2>" in (out / "report.html").read_text()


@pytest.mark.slow
def test_compare_explain_without_both_channels_explains_the_first_against_the_others(tmp_path):
    lax_owners = tmp_path / "lax_owners.toml"
    owners = shipped_dir() / "owners.toml"
    lax_owners.write_text(f'extends = "{owners}"\n[levers]\nplatform.selection_strictness = 0.0\n')
    out = tmp_path / "c"
    args = ["compare", "owners", str(lax_owners), "--explain", "--explain-replicates", "1"]
    assert main([*args, *COMPARE, "--days", "20", "--workers", "2", "--out", str(out)]) == 0
    folder = out / "explain" / "owners-vs-lax_owners"
    assert [p.name for p in (out / "explain").iterdir()] == [folder.name]
    manifest = json.loads((folder / "manifest.json").read_text())
    compared = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "scenarios" and manifest["replicates"] == 1
    assert manifest["seeds"] == compared["seeds"][:1] and len(compared["seeds"]) == R
    assert set(pd.read_csv(folder / "explain.csv").part) == {"selection", TOTAL}
    why = section((out / "report.md").read_text())
    assert "### owners to lax_owners" in why and "first replicate seed" in why
    assert "**selection**: platform.selection_strictness 0.3 -> 0" in why.replace("- ", "")


def test_compare_without_explain_writes_no_explanation(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["compare", "hybrid", "owners", *COMPARE, "--days", "5", "--out", str(out)]) == 0
    assert not (out / "explain").exists()
    assert "Why they differ" not in (out / "report.md").read_text()
    assert "Why they differ" not in (out / "report.html").read_text()
    assert "Shapley" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--explain", "--explain-replicates", "0"],
            "--explain-replicates 0 is outside the allowed range [1, ...)",
        ),
        (
            ["--explain", "--explain-replicates", "-3"],
            "--explain-replicates -3 is outside the allowed range [1, ...)",
        ),
        (["--explain-replicates", "2"], "--explain-replicates is for --explain: add --explain"),
    ],
)
def test_compare_explain_bad_input_exits_2_before_running(
    tmp_path, capsys, monkeypatch, args, message
):
    import sim.experiments.experiment

    monkeypatch.setattr(
        sim.experiments.experiment, "run_experiment", lambda *a, **k: pytest.fail("ran")
    )
    out = tmp_path / "c"
    assert main(["compare", "hybrid", "owners", *args, *COMPARE, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fishschool: error: ") and message in err[-1]
    assert list(tmp_path.iterdir()) == []


def test_compare_explain_checks_the_scenario_pairs_before_running(tmp_path, capsys, monkeypatch):
    import sim.experiments.experiment

    monkeypatch.setattr(
        sim.experiments.experiment, "run_experiment", lambda *a, **k: pytest.fail("ran")
    )
    big = tmp_path / "big.toml"
    big.write_text(f'extends = "{shipped_dir() / "streamer.toml"}"\n[world]\nconsumers = 3000\n')
    out = tmp_path / "c"  # owners has the default world, big 3,000 consumers
    assert main(["compare", "owners", str(big), "--explain", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "differ in world size or days" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml"]
