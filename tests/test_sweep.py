"""Sweeps: designs, executors (serial, local processes, Dask), resume, failures, analysis."""

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

from analysis.sensitivity import analyze
from sim.cli import main
from sim.scenario import ScenarioError, shipped_dir
from sim.sweep import design_points, load_sweep, plan, run_sweep

SWEEPS = shipped_dir() / "sweeps"
SMALL = """
base = "{base}"
design = "{design}"
samples = {samples}
replicates = {replicates}
seed = 4
outcomes = ["return_rate", "visit_conversion", "brand_profit"]
[set]
world.consumers = 2000
levers.world.owners = 10
horizon = {horizon}
"""


def small_sweep(tmp_path: Path, body: str, design="random", samples=4, replicates=2, horizon=10):
    text = (
        SMALL.format(
            base=shipped_dir() / "hybrid.toml",
            design=design,
            samples=samples,
            replicates=replicates,
            horizon=horizon,
        )
        + body
    )
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return load_sweep(path)


VARY = """
[levers]
platform.selection_strictness = [0.0, 0.8]
[uncertainties]
purchase.trust = [1.0, 3.0]
"""


def test_ishigami_sobol_indices_match_their_analytic_values(tmp_path):
    """The whole path: sweep file, design, runs, storage, gathering and SALib analysis."""
    sweep = load_sweep(SWEEPS / "ishigami.toml")
    report = run_sweep(sweep, tmp_path / "ishigami")
    assert report.total == 512 * 8 and not report.failures
    analyze(tmp_path / "ishigami")
    s = pd.read_csv(tmp_path / "ishigami" / "analysis" / "sobol.csv").set_index("parameter")
    a = 7.0
    b = 0.1
    v = a**2 / 8 + b * np.pi**4 / 5 + b**2 * np.pi**8 / 18 + 0.5
    s1 = np.array([0.5 * (1 + b * np.pi**4 / 5) ** 2, a**2 / 8, 0.0]) / v
    st = (
        np.array(
            [
                0.5 * (1 + b * np.pi**4 / 5) ** 2 + 8 * b**2 * np.pi**8 / 225,
                a**2 / 8,
                8 * b**2 * np.pi**8 / 225,
            ]
        )
        / v
    )
    assert np.allclose(s1, [0.3139, 0.4424, 0.0], atol=1e-3)  # the textbook values
    assert np.abs(s.loc[["x1", "x2", "x3"], "S1"].to_numpy() - s1).max() < 0.05
    assert np.abs(s.loc[["x1", "x2", "x3"], "ST"].to_numpy() - st).max() < 0.07
    # The analytic values sit inside the bootstrap intervals.
    assert (np.abs(s.S1.to_numpy() - s1) <= s.S1_conf.to_numpy()).all()


def test_designs_sizes_and_determinism(tmp_path):
    sweep = small_sweep(tmp_path, VARY, design="sobol", samples=8)
    points = design_points(sweep)
    assert len(points) == 8 * (2 * 2 + 2)
    assert points == design_points(sweep)
    assert all(0.0 <= p["platform.selection_strictness"] <= 0.8 for p in points)
    grid = small_sweep(tmp_path, VARY + "\n", design="grid")
    assert len(design_points(grid)) == 9  # 3 levels x 3 levels
    crossed = small_sweep(
        tmp_path,
        "[levers]\nstreamer.products_per_session = {values = [30, 90]}\n"
        "[uncertainties]\npurchase.trust = [1.0, 3.0]\n",
        design="lhs",
        samples=5,
    )
    pts = design_points(crossed)
    assert len(pts) == 10
    trusts = [
        [p["purchase.trust"] for p in pts if p["streamer.products_per_session"] == v]
        for v in (30, 90)
    ]
    assert trusts[0] == trusts[1]  # each lever setting meets the same uncertainty samples


def test_integer_parameters_are_rounded(tmp_path):
    sweep = small_sweep(tmp_path, "[levers]\nstreamer.products_per_session = [10, 100]\n")
    assert all(isinstance(p["streamer.products_per_session"], int) for p in design_points(sweep))


def test_dask_local_cluster_gives_the_same_numbers_as_serial(tmp_path, dask_client):
    sweep = small_sweep(tmp_path, VARY)
    serial = run_sweep(sweep, tmp_path / "serial")
    dask = run_sweep(sweep, tmp_path / "dask", dask_client.get_executor(pure=False))
    assert serial.computed == dask.computed == 8
    a, b = pd.read_parquet(serial.dataset), pd.read_parquet(dask.dataset)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.columns) >= {
        "point_id",
        "replicate",
        "seed",
        "channel",
        "outcome",
        "value",
        "platform.selection_strictness",
        "purchase.trust",
    }


def test_sweep_command_on_a_dask_scheduler(tmp_path, dask_client, capsys):
    sweep = small_sweep(tmp_path, VARY, samples=2, replicates=1)
    out = tmp_path / "out"
    address = dask_client.scheduler.address
    assert main(["sweep", str(sweep.path), "--scheduler", address, "--out", str(out)]) == 0
    assert "Dask cluster at" in capsys.readouterr().err
    assert len(pd.read_parquet(out / "sweep.parquet").drop_duplicates("point_id")) == 2


def test_local_processes_give_the_same_numbers_as_serial(tmp_path):
    sweep = small_sweep(tmp_path, VARY, samples=2)
    assert (
        main(["sweep", str(sweep.path), "--workers", "1", "--out", str(tmp_path / "a"), "--quiet"])
        == 0
    )
    assert (
        main(["sweep", str(sweep.path), "--workers", "2", "--out", str(tmp_path / "b"), "--quiet"])
        == 0
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "sweep.parquet"),
        pd.read_parquet(tmp_path / "b" / "sweep.parquet"),
    )


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    # delivery.lag_min above lag_max (5) is invalid: those points fail, the others run.
    sweep = small_sweep(
        tmp_path, "[uncertainties]\ndelivery.lag_min = [0, 9]\n", samples=6, replicates=1
    )
    out = tmp_path / "out"
    assert main(["sweep", str(sweep.path), "--workers", "1", "--out", str(out), "--quiet"]) == 1
    errors = [json.loads(p.read_text()) for p in (out / "runs").glob("*.error.json")]
    bad = [p for p in design_points(sweep) if p["delivery.lag_min"] > 5]
    assert 0 < len(errors) == len(bad)
    assert all("lag_min" in e["error"] and e["point"]["delivery.lag_min"] > 5 for e in errors)
    assert "Traceback" in errors[0]["traceback"]
    data = pd.read_parquet(out / "sweep.parquet")
    assert data.point_id.nunique() == 6 - len(bad)
    assert capsys.readouterr().err.count("run failed") == len(bad)


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    sweep = small_sweep(tmp_path, VARY, samples=12, replicates=2, horizon=25)
    total = len(plan(sweep))
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("fishschool")
    proc = subprocess.Popen(
        [str(exe), "sweep", str(sweep.path), "--workers", "1", "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "runs").glob("*.json"))) < 5:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the driver (and its workers)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert 5 <= len(before) < total
    assert not list((out / "runs").glob("*.tmp")) or True  # a half-written temp may remain
    report = run_sweep(sweep, out)
    assert report.skipped == len(before) and report.computed == total - len(before)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert all(after[name] == mtime for name, mtime in before.items())  # none recomputed
    data = pd.read_parquet(report.dataset)
    runs = data.drop_duplicates(["point_id", "replicate"])
    assert len(runs) == total  # none missing, none twice
    again = run_sweep(sweep, out)
    assert again.computed == 0 and again.skipped == total


def test_robustness_table_and_figures(tmp_path):
    sweep = small_sweep(
        tmp_path,
        "[levers]\nplatform.selection_strictness = {values = [0.0, 0.6]}\n"
        "[uncertainties]\npurchase.hype = [0.5, 3.0]\n",
        design="lhs",
        samples=4,
        replicates=1,
        horizon=12,
    )
    run_sweep(sweep, tmp_path / "out")
    written = {p.name for p in analyze(tmp_path / "out")}
    assert {"robustness.csv", "robustness.md", "response_return_rate.png"} <= written
    table = pd.read_csv(tmp_path / "out" / "analysis" / "robustness.csv")
    assert set(table.lever_setting) == {
        "platform.selection_strictness=0",
        "platform.selection_strictness=0.6",
    }
    assert table.samples.eq(4).all()
    assert table.owners_win_share.between(0, 1).all()
    regrets = table[["owners_mean_regret", "streamer_mean_regret"]]
    assert (regrets >= 0).all().all()
    assert (regrets.min(axis=1) == 0).where(table.owners_win_share.isin([0, 1]), True).all()
    rr = table[table.outcome == "return_rate"]
    assert (rr.better == "lower").all()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('design = "fractal"\n', "design = 'fractal' is not allowed"),
        ('design = "sobol"\nsamples = 10\n', "samples = 10 must be a power of 2"),
        (
            'outcomes = ["retrun_rate"]\n',
            "unknown metric 'retrun_rate' (did you mean 'return_rate'?)",
        ),
        (
            "[levers]\nowners.open_rate = [0.1, 0.5]\n",
            "owners.open_rate is a uncertainty, not a lever",
        ),
        ("[levers]\nowners.commission = [0.5, 0.1]\n", "low must be below high"),
        ("[levers]\nowners.commission = [0.1, 1.5]\n", "owners.commission = 1.5 is outside"),
        (
            'design = "sobol"\nsamples = 4\n'
            "[levers]\nchannels.streamer = {values = [true, false]}\n",
            "design 'sobol' needs a [low, high] range",
        ),
        ("replicates = 0\n", "replicates = 0 must be an integer in [1, 10000]"),
        ("sample = 4\n", "unknown key 'sample' (did you mean 'samples'?)"),
        ("", "nothing to vary"),
    ],
)
def test_bad_sweep_files(tmp_path, capsys, body, message):
    head = f'base = "{shipped_dir() / "owners.toml"}"\n'
    path = tmp_path / "bad.toml"
    path.write_text(head + body)
    with pytest.raises(ScenarioError) as err:
        load_sweep(path)
    assert message in str(err.value)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2


def test_changing_the_outcomes_recomputes_instead_of_reusing(tmp_path):
    sweep = small_sweep(tmp_path, VARY, samples=1, replicates=1)
    run_sweep(sweep, tmp_path / "out")
    text = sweep.path.read_text().replace('"brand_profit"]', '"brand_profit", "reach_share"]')
    sweep.path.write_text(text)
    again = run_sweep(load_sweep(sweep.path), tmp_path / "out")
    assert again.computed == 1 and again.skipped == 0
    assert "reach_share" in set(pd.read_parquet(again.dataset).outcome)
