"""Optimisation (``fishschool optimize``): the search finds a known front, regret and risk
measures, common random numbers, the same Pareto set serially and on processes, resume after a
kill without recomputing, bad input, and the command end to end on the model."""

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

import sim.experiments.sweep as sweeps
from sim.cli import main
from sim.experiments.engine import executor_for
from sim.experiments.optimize import (
    OptimizeError,
    cvar,
    load_optimization,
    non_dominated,
    regret,
    risk,
    run_optimization,
    uncertainty_samples,
    write_results,
)
from sim.experiments.scenario import ScenarioError, shipped_dir

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = shipped_dir() / "optimize" / "launch.toml"
POSTERIOR = ROOT / "docs" / "calibration" / "posterior_samples.csv"

ZDT1 = """model = "zdt1"
seed = 3
[levers]
x1 = [0.0, 1.0]
x2 = [0.0, 1.0]
[uncertainties]
u = [0.0, 0.2]
[[objectives]]
metric = "f1"
[[objectives]]
metric = "f2"
[risk]
measure = "{measure}"
[samples]
count = {samples}
[search]
population = {population}
generations = {generations}
seed = {seed}
"""

# The launch question at a size that runs in a fraction of a second a run.
TINY = [
    "world.consumers=2000",
    "world.days=10",
    "search.population=4",
    "search.generations=2",
    "samples.count=2",
]


def zdt1(tmp_path: Path, measure="mean", samples=2, population=16, generations=25, seed=1):
    path = tmp_path / "zdt1.toml"
    path.write_text(
        ZDT1.format(
            measure=measure,
            samples=samples,
            population=population,
            generations=generations,
            seed=seed,
        )
    )
    return path


def stored_runs(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}


# ----------------------------------------------------------------------------------------------
# The search finds what is known
# ----------------------------------------------------------------------------------------------
def test_the_toy_front_matches_the_known_pareto_front(tmp_path):
    """ZDT1 on two variables, shifted by the mean of a sampled uncertainty u: its Pareto front
    is f2 = 1 - sqrt(f1) + mean(u) for f1 in [0, 1]."""
    opt = load_optimization(zdt1(tmp_path, generations=40))  # 640 mixes, 1,280 runs
    res = run_optimization(opt, tmp_path / "out")
    draws, _ = uncertainty_samples(opt)
    shift = np.mean([d["u"] for d in draws])
    assert 0 < shift < 0.2
    f1 = res.pareto["mean.f1.all"].to_numpy()
    f2 = res.pareto["mean.f2.all"].to_numpy()
    assert len(res.pareto) >= 20
    error = f2 - (1 - np.sqrt(f1) + shift)
    assert error.min() > -1e-9  # nothing below the true front
    assert np.median(error) < 0.005 and error.max() < 0.05
    assert f1.min() < 0.02 and f1.max() > 0.98  # the whole front, end to end
    t = np.linspace(0, 1, 201)
    true = np.c_[t, 1 - np.sqrt(t) + shift]
    found = np.c_[f1, f2]
    igd = np.linalg.norm(true[:, None, :] - found[None], axis=2).min(axis=1).mean()
    assert igd < 0.02  # inverted generational distance to the true front
    # The Pareto set is the non-dominated set of every mix evaluated.
    cand = res.candidates
    f = cand[["mean.f1.all", "mean.f2.all"]].to_numpy()
    assert (cand.pareto.to_numpy() == non_dominated(f)).all()


def test_risk_measures_on_known_numbers():
    losses = np.array([[1.0, 4.0, 2.0, 3.0], [2.0, 2.0, 2.0, 2.0], [0.0, 5.0, 1.0, 1.0]])
    assert risk(losses, "mean").tolist() == [2.5, 2.0, 1.75]
    assert cvar(losses, 0.25).tolist() == [4.0, 2.0, 5.0]  # the worst sample
    assert cvar(losses, 0.5).tolist() == [3.5, 2.0, 3.0]
    assert cvar(losses, 1.0).tolist() == risk(losses, "mean").tolist()
    # Best per sample: 0, 2, 1, 1 -> regrets, and their maximum.
    assert regret(losses).tolist() == [[1, 2, 1, 2], [2, 0, 1, 1], [0, 3, 0, 0]]
    assert risk(losses, "regret").tolist() == [2.0, 2.0, 3.0]
    missing = losses.copy()
    missing[1, 2] = np.nan
    assert risk(missing, "mean")[1] >= 1e12  # a missing value: the worst loss


def test_regret_is_zero_for_each_samples_best_mix_and_positive_otherwise(tmp_path):
    rng = np.random.default_rng(5)
    losses = rng.normal(size=(30, 6))
    r = regret(losses)
    assert (r >= 0).all()
    assert (r[losses.argmin(axis=0), range(6)] == 0).all()
    assert ((r == 0).sum(axis=0) == 1).all()  # only the best (no ties here)
    # On an optimisation searched by maximum regret: every mix evaluated, every sample.
    opt = load_optimization(
        zdt1(tmp_path, measure="regret", samples=4, population=8, generations=4)
    )
    res = run_optimization(opt, tmp_path / "out")
    ev = res.evaluations
    for label in ("f1.all", "f2.all"):
        by_sample = ev.groupby("sample")
        assert (ev[f"regret.{label}"] >= 0).all()
        assert np.allclose(by_sample[f"regret.{label}"].min(), 0.0)
        best = ev.loc[by_sample[label].idxmin()]  # both minimised
        assert np.allclose(best[f"regret.{label}"], 0.0)
    # The recommendation: its regret on each sample against that sample's best mix.
    s = res.samples
    rec = ev[ev.candidate == res.recommended].set_index("sample")
    assert np.allclose(s["regret.f1.all"], rec.loc[s["sample"], "regret.f1.all"])
    assert (s.loc[s.best_candidate == res.recommended, "regret.f1.all"] == 0).all()
    chosen = res.candidates.set_index("candidate").loc[res.recommended]
    assert chosen.pareto and chosen["max_regret.f1.all"] == res.pareto["max_regret.f1.all"].min()
    # What flips it: u split at its median; a half's own robust mix never does worse there.
    flips = res.flips
    assert flips.parameter.tolist() == ["u"] and flips.samples_low.iloc[0] == 2
    assert (flips.regret_saved >= 0).all()
    assert (flips.regret_saved[~flips.flips.astype(bool)] <= 1e-12).all()


def test_every_mix_meets_the_same_samples_and_seeds(tmp_path):
    """Common random numbers: every candidate's runs use the K draws and seeds, and the
    samples are drawn from the posterior by weight, deterministic in the seed."""
    opt = load_optimization(LAUNCH, ["samples.count=5"])
    assert opt.posterior is not None and opt.posterior.resolve() == POSTERIOR
    draws, seeds = uncertainty_samples(opt)
    again = uncertainty_samples(load_optimization(LAUNCH, ["samples.count=5"]))
    assert (draws, seeds) == again
    assert len(seeds) == len(set(seeds)) == 5
    assert all(set(d) == set(draws[0]) and "purchase.trust" in d for d in draws)
    opt = load_optimization(zdt1(tmp_path, samples=3, population=4, generations=2))
    res = run_optimization(opt, tmp_path / "out")
    ev = res.evaluations
    per_candidate = ev.groupby("candidate").seed.apply(tuple)
    assert per_candidate.nunique() == 1 and len(per_candidate.iloc[0]) == 3


# ----------------------------------------------------------------------------------------------
# Executors and resume
# ----------------------------------------------------------------------------------------------
def test_same_seed_same_pareto_set_serially_and_on_processes(tmp_path):
    opt = load_optimization(zdt1(tmp_path, population=12, generations=6, seed=9))
    serial = run_optimization(opt, tmp_path / "serial")
    with executor_for(2) as (pool, _):
        parallel = run_optimization(opt, tmp_path / "processes", pool)
    pd.testing.assert_frame_equal(serial.pareto, parallel.pareto)
    pd.testing.assert_frame_equal(serial.evaluations, parallel.evaluations)
    assert parallel.timings["workers"] == 2
    other = run_optimization(
        load_optimization(zdt1(tmp_path, population=12, generations=6, seed=10)),
        tmp_path / "other",
    )
    assert not serial.pareto.equals(other.pareto)  # the seed matters


def test_on_a_dask_cluster_the_same_numbers(tmp_path, dask_client):
    """The model's runs through the engine on a Dask cluster's executor, as sweeps run."""
    opt = load_optimization(LAUNCH, TINY)
    dask = run_optimization(opt, tmp_path / "dask", dask_client.get_executor(pure=False))
    serial = run_optimization(opt, tmp_path / "serial")
    pd.testing.assert_frame_equal(dask.evaluations, serial.evaluations)
    assert dask.recommended == serial.recommended is not None


def test_more_generations_reuse_every_earlier_evaluation(tmp_path):
    """The search is deterministic in its seed: a rerun (or a longer run) asks the same
    candidates again and finds their runs stored."""
    path = zdt1(tmp_path, population=10, generations=3)
    out = tmp_path / "out"
    first = run_optimization(load_optimization(path), out)
    before = stored_runs(out)
    assert first.timings["runs_computed"] == len(before) > 0
    again = run_optimization(load_optimization(path), out)
    assert again.timings["runs_computed"] == 0
    longer = run_optimization(load_optimization(path, ["search.generations=5"]), out)
    fresh = run_optimization(load_optimization(path, ["search.generations=5"]), tmp_path / "new")
    assert longer.timings["runs_computed"] == fresh.timings["runs_computed"] - len(before)
    assert all(stored_runs(out)[name] == t for name, t in before.items())
    pd.testing.assert_frame_equal(longer.pareto, fresh.pareto)


def test_a_killed_optimisation_resumes_without_recomputing(tmp_path):
    out = tmp_path / "out"
    sets = [*TINY[:2], "search.population=4", "search.generations=3", "samples.count=2"]
    opt = load_optimization(LAUNCH, sets)
    exe = Path(sys.executable).with_name("fishschool")
    args = [str(exe), "optimize", str(LAUNCH), "--workers", "1", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(
        args + [a for s in sets for a in ("--set", s)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 90
    while time.time() < deadline and len(list((out / "runs").glob("*.json"))) < 6:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the driver and its workers
    proc.wait()
    before = stored_runs(out)
    assert 6 <= len(before) < opt.planned_runs
    assert not (out / "pareto.csv").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["content"] == "optimization" and manifest["finished"] is None
    (out / "runs" / ".0123456789abcdef0123.json.5f3a.tmp").write_text('{"key": "01')
    sweeps.model_digest.cache_clear()  # others' edits of sim/ meanwhile: as the killed process
    res = run_optimization(opt, out)
    assert not list(out.rglob("*.tmp"))
    assert res.timings["runs_reused"] >= len(before)
    assert res.timings["runs_computed"] == len(stored_runs(out)) - len(before)
    assert all(stored_runs(out)[name] == t for name, t in before.items())  # none recomputed
    write_results(res, out)
    assert json.loads((out / "manifest.json").read_text())["finished"] is not None
    again = run_optimization(opt, out)
    assert again.timings["runs_computed"] == 0
    pd.testing.assert_frame_equal(again.pareto, res.pareto)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------
HEAD = f'extends = "{shipped_dir() / "base.toml"}"\n'
TAIL = "[world]\nconsumers = 2000\ndays = 10\n"
OBJECTIVE = '[[objectives]]\nmetric = "brand_profit"\n'
BAD = [
    (
        "[levers]\nowners.comission = [0.1, 0.2]\n" + OBJECTIVE,
        "levers.owners.comission: unknown parameter 'owners.comission' (did you mean "
        "'commission'?)",
    ),
    (
        "[levers]\nowners.commission = [0.1, 1.5]\n" + OBJECTIVE,
        "levers.owners.commission = 1.5 is outside the allowed range [0, 1]",
    ),
    (
        "[levers]\nowners.open_rate = [0.1, 0.5]\n" + OBJECTIVE,
        "owners.open_rate is an uncertainty, not a lever: move it to [uncertainties]",
    ),
    (
        "[levers]\nstreamer.products_per_session = [20, 400]\n" + OBJECTIVE,
        "levers.streamer.products_per_session = 400: the parameters do not validate",
    ),
    (
        '[levers]\nowners.commission = [0.1, 0.2]\n[[objectives]]\nmetric = "brand_proft"\n',
        "objectives[0].metric = 'brand_proft': unknown metric (did you mean 'brand_profit'?)",
    ),
    (
        "[levers]\nowners.commission = [0.1, 0.2]\n"
        + OBJECTIVE
        + '[[objectives]]\nmetric = "return_rate"\nchannel = "whale"\n',
        "objectives[1].channel = 'whale' is not allowed: choose one of owners, streamer, "
        "conventional, all",
    ),
    (
        "[levers]\nowners.commission = [0.1, 0.2]\n" + OBJECTIVE + '[risk]\nmeasure = "var"\n',
        "risk.measure = 'var' is not allowed: choose one of mean, cvar, regret",
    ),
    (
        "[levers]\nowners.commission = [0.1, 0.2]\n" + OBJECTIVE + '[risk]\nmeasure = "cvar"\n',
        "risk.level = None is not allowed: CVaR needs the share of worst samples",
    ),
    (
        "[levers]\nowners.commission = [0.1, 0.2]\n" + OBJECTIVE + "[search]\npopulation = 2\n",
        "search.population = 2 is not allowed: a whole number in [4, 10000]",
    ),
    (
        "[levers]\nowners.commission = [0.1, 0.2]\n"
        + OBJECTIVE
        + '[samples]\nposterior = "x.csv"\n',
        "samples.posterior = 'x.csv': file not found",
    ),
    (
        "[levers]\nowners.commission = [0.1, 0.2]\n"
        + OBJECTIVE
        + '[budget]\nspend = ["ads", "slot_fees"]\nlimit = 100.0\n',
        "budget.spend: 'slot_fees' is not a cost metric (did you mean 'slot_fee'?)",
    ),
    ("[levers]\nowners.commission = 0.2\n" + OBJECTIVE, "nothing to search"),
    ("[levers]\nowners.commission = [0.1, 0.2]\n", "no objectives"),
    (
        "replicates = 4\n[levers]\nowners.commission = [0.1, 0.2]\n" + OBJECTIVE,
        "replicates: an optimisation runs each candidate once per uncertainty sample",
    ),
]


@pytest.mark.parametrize("body,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_optimisation_files(tmp_path, capsys, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + body + TAIL)
    with pytest.raises(ScenarioError) as err:
        load_optimization(path)
    assert message in str(err.value), str(err.value)
    assert str(path) in str(err.value)
    capsys.readouterr()
    assert main(["optimize", str(path), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fishschool: error: ") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


@pytest.mark.parametrize(
    "sets,message",
    [
        (["owners.commission=0.2"], "--set owners.commission=0.2: the optimisation searches"),
        (["search.generations=0"], "search.generations = 0 is not allowed"),
        (["risk.measure=worst"], "--set risk.measure=worst: risk.measure = 'worst' is not"),
        (["world.consumers=1"], "world.consumers = 1 is outside the allowed range"),
    ],
)
def test_bad_overrides(tmp_path, capsys, sets, message):
    args = ["optimize", str(LAUNCH), "--out", str(tmp_path / "o")]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_folder_that_is_not_this_optimisations_is_refused(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["optimize", str(LAUNCH), "--out", str(other), "--dry-run"]) == 2
    assert "holds other files and no optimisation manifest" in capsys.readouterr().err
    toy = tmp_path / "toy"
    run_optimization(load_optimization(zdt1(tmp_path, population=4, generations=1)), toy)
    with pytest.raises(OptimizeError, match="holds optimisation 'zdt1'"):
        run_optimization(load_optimization(LAUNCH, TINY), toy)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------------------------
# The command, end to end on the model
# ----------------------------------------------------------------------------------------------
def test_the_command_on_the_model_end_to_end(tmp_path, capsys):
    """The shipped launch file at a tiny size, on two processes: every result file, the same
    numbers as a serial run, a rerun that computes nothing."""
    out = tmp_path / "launch"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["optimize", str(LAUNCH), *sets, "--workers", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto set (" in printed and "Recommended robust mix: #" in printed
    assert "runs computed" in printed
    for name in (
        "manifest.json",
        "samples.csv",
        "evaluations.csv",
        "candidates.csv",
        "pareto.csv",
        "flips.csv",
        "generations.csv",
        "pareto.png",
        "recommendation.md",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["content"] == "optimization" and manifest["finished"]
    assert manifest["versions"]["pymoo"] != "not installed"
    assert manifest["samples"]["count"] == 2 and len(manifest["samples"]["seeds"]) == 2
    assert manifest["command"][0] == "fishschool" and manifest["git_commit"]
    ev = pd.read_csv(out / "evaluations.csv")
    assert len(ev) == 2 * ev.candidate.nunique() == 2 * len(pd.read_csv(out / "candidates.csv"))
    assert {"brand_profit.all", "return_rate.all", "spend_per_1000"} <= set(ev.columns)
    pareto = pd.read_csv(out / "pareto.csv")
    assert len(pareto) >= 1 and pareto.feasible.all()
    assert (out / "recommendation.md").read_text().count("## ") >= 4
    # Serially, here: the same numbers.
    serial = run_optimization(load_optimization(LAUNCH, TINY), tmp_path / "serial")
    pd.testing.assert_frame_equal(serial.pareto, pareto, check_dtype=False)
    # Again: everything is stored.
    assert main(["optimize", str(LAUNCH), *sets, "--workers", "1", "--out", str(out)]) == 0
    assert "0 runs computed" in capsys.readouterr().out


def test_validate_checks_an_optimisation_file_without_running_it(capsys):
    from sim.cli import main

    assert main(["validate", "scenarios/optimize/launch.toml"]) == 0
    assert "ok  optimisation launch: 5 levers, 2 objectives" in capsys.readouterr().out
