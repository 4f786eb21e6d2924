"""Sweeps: designs, executors (serial, local processes, Dask), resume, failures, analysis."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim.experiments.sweep as sweeps
from analysis.sensitivity import analyze
from sim.cli import main
from sim.experiments.scenario import ScenarioError, shipped_dir
from sim.experiments.sweep import design_points, load_sweep, plan, run_sweep
from sim.world.params import ParameterError

SWEEPS = shipped_dir() / "sweeps"
SMALL_WORLD = """
extends = "{base}"
[world]
consumers = 2000
days = {days}
[levers]
owners.count = 10
"""
SMALL = """
extends = "small_world.toml"
design = "{design}"
samples = {samples}
replicates = {replicates}
seed = 4
metrics = ["return_rate", "visit_conversion", "brand_profit"]
"""


def small_sweep(tmp_path: Path, body: str, design="random", samples=4, replicates=2, days=10):
    """A sweep of ``body`` over a small hybrid world (a scenario file the sweep extends)."""
    world = SMALL_WORLD.format(base=shipped_dir() / "hybrid.toml", days=days)
    (tmp_path / "small_world.toml").write_text(world)
    text = SMALL.format(design=design, samples=samples, replicates=replicates) + body
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return load_sweep(path)


VARY = """
[levers]
platform.selection_strictness = [0.0, 0.8]
[uncertainties]
purchase.trust = [1.0, 3.0]
"""


@pytest.mark.slow  # 2,560 runs through the whole sweep path: about 10 s
def test_ishigami_sobol_indices_match_their_analytic_values(tmp_path):
    """The whole path: sweep file, design, runs, storage, gathering and SALib analysis."""
    sweep = load_sweep(SWEEPS / "ishigami.toml")
    report = run_sweep(sweep, tmp_path / "ishigami")
    assert report.total == 512 * 5 and not report.failures
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
    # Convergence: indices on 4, 8, ..., 512 base samples; the error against the analytic
    # values shrinks from the smallest sample to the full one, the intervals too.
    steps = pd.read_csv(tmp_path / "ishigami" / "analysis" / "sobol_convergence.csv")
    assert sorted(steps.samples.unique()) == [4, 8, 16, 32, 64, 128, 256, 512]
    error = steps.assign(err=lambda d: (d.ST - st[d.parameter.str[1].astype(int) - 1]).abs())
    by_n = error.groupby("samples")[["err", "ST_conf"]].mean()
    assert (by_n.loc[512] < by_n.loc[8]).all()
    assert (tmp_path / "ishigami" / "analysis" / "convergence_y_all.png").is_file()
    assert "Nothing" in (tmp_path / "ishigami" / "analysis" / "warnings.md").read_text()


def test_sobol_warnings_name_wide_intervals_and_indices_outside_0_1():
    from analysis.sensitivity import sobol_warnings

    table = pd.DataFrame(
        {
            "metric": ["m", "m", "k"],
            "channel": ["all", "all", "all"],
            "parameter": ["a", "b", "a"],
            "S1": [0.1, 0.05, 1.4],
            "S1_conf": [0.3, 0.3, 0.1],
            "ST": [0.2, 0.1, 0.9],
            "ST_conf": [0.4, 0.3, 0.05],
        }
    )
    text = "\n".join(sobol_warnings(table))
    assert "m (all): intervals up to ±0.40 are wider than the largest total-order index" in text
    assert "k (all): S1 of a = 1.40 ± 0.10 lies outside [0, 1]" in text
    assert "k (all): intervals" not in text


def test_noise_share_is_the_within_point_share_of_variance():
    from analysis.sensitivity import noise_share

    rng = np.random.default_rng(3)
    points, reps = 400, 4
    effect = np.repeat(rng.normal(0, 2.0, points), reps)  # between points: variance 4
    noise = rng.normal(0, 1.0, points * reps)  # within: variance 1, so the share is 1/5
    data = pd.DataFrame(
        {
            "point_id": np.repeat(np.arange(points), reps),
            "metric": "m",
            "channel": "all",
            "value": effect + noise,
        }
    )
    share = noise_share(data).noise_share.iloc[0]
    assert share == pytest.approx(0.2, abs=0.03)
    quiet = data.assign(value=effect)  # no replicate noise at all
    assert noise_share(quiet).noise_share.iloc[0] == 0.0


def test_designs_sizes_and_determinism(tmp_path):
    sweep = small_sweep(tmp_path, VARY, design="sobol", samples=8)
    points = design_points(sweep)
    assert len(points) == 8 * (2 + 2)
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
        "metric",
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


@pytest.mark.parametrize("workers", ["1", "2"])  # here, and in batches on local processes
def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys, workers):
    # delivery.lag_min above lag_max (5) is invalid: those points fail, the others run.
    sweep = small_sweep(
        tmp_path, "[uncertainties]\ndelivery.lag_min = [0, 9]\n", samples=6, replicates=1
    )
    out = tmp_path / "out"
    assert main(["sweep", str(sweep.path), "--workers", workers, "--out", str(out), "--quiet"]) == 1
    errors = [json.loads(p.read_text()) for p in (out / "runs").glob("*.error.json")]
    bad = [p for p in design_points(sweep) if p["delivery.lag_min"] > 5]
    assert 0 < len(errors) == len(bad)
    assert all("lag_min" in e["error"] and e["point"]["delivery.lag_min"] > 5 for e in errors)
    assert all(e["error"].startswith("ParameterError: ") for e in errors)
    assert "Traceback" in errors[0]["traceback"]
    assert "with_overrides" in errors[0]["traceback"]  # where it failed, on a worker too
    data = pd.read_parquet(out / "sweep.parquet")
    assert data.point_id.nunique() == 6 - len(bad)
    assert capsys.readouterr().err.count("run failed") == len(bad)


@pytest.mark.parametrize("workers", ["1", "2"])  # here, and in batches on local processes
def test_killed_sweep_resumes_without_recomputing(tmp_path, workers):
    sweep = small_sweep(tmp_path, VARY, samples=12, replicates=2, days=25)
    total = len(plan(sweep))
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("fishschool")
    proc = subprocess.Popen(
        [str(exe), "sweep", str(sweep.path), "--workers", workers, "--out", str(out), "--quiet"],
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
    # What a kill in the middle of a write leaves (whether this kill did or not).
    (out / "runs" / ".0123456789abcdef0123.json.5f3a.tmp").write_text('{"key": "01')
    (out / ".sweep.parquet.77aa.tmp").write_bytes(b"PAR1")
    (out / ".analysis.x1y2.partial").mkdir()
    # Other engineers' edits of sim/ while this test runs would change the model digest between
    # the killed process and this one: read it afresh, as the killed process did.
    sweeps.model_digest.cache_clear()
    report = run_sweep(sweep, out)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.partial"))
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
        days=12,
    )
    run_sweep(sweep, tmp_path / "out")
    written = {p.name for p in analyze(tmp_path / "out")}
    assert {"robustness.csv", "robustness.md", "response_return_rate.png"} <= written
    assert "discovery.md" in written  # PRIM: where the streamer beats the owners
    assert "the streamer beats the owners" in (tmp_path / "out/analysis/discovery.md").read_text()
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
    rr = table[table.metric == "return_rate"]
    assert (rr.better == "lower").all()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('design = "fractal"\n', "design = 'fractal' is not allowed"),
        ('design = "sobol"\nsamples = 10\n', "samples = 10 must be a power of 2"),
        (
            'metrics = ["retrun_rate"]\n',
            "unknown metric 'retrun_rate' (did you mean 'return_rate'?)",
        ),
        (
            "[levers]\nowners.open_rate = [0.1, 0.5]\n",
            "owners.open_rate is an uncertainty, not a lever",
        ),
        ("[levers]\nowners.commission = [0.5, 0.1]\n", "low must be below high"),
        ("[levers]\nowners.commission = [0.1, 1.5]\n", "owners.commission = 1.5 is outside"),
        (
            'design = "sobol"\nsamples = 4\n'
            "[levers]\nchannels.streamer = {values = [true, false]}\n",
            "design 'sobol' needs a [low, high] range",
        ),
        (
            "replicates = 0\n[levers]\nowners.commission = [0.1, 0.2]\n",
            "replicates = 0 is outside the allowed range [1, 100000]",
        ),
        (
            "[world]\nconsumers = [1000, 2000]\n",
            "world.consumers: only levers and uncertainties vary in a sweep; [world] sets one",
        ),
        (
            "[world]\ndays = 10\n[events]\nstreamer_removed_day = 12\n"
            "[levers]\nowners.commission = [0.1, 0.2]\n",
            "events.streamer_removed_day = 12 is not within the simulated days",
        ),
        ("sample = 4\n", "unknown key 'sample' (did you mean 'samples'?)"),
        ("", "nothing to vary"),
    ],
)
def test_bad_sweep_files(tmp_path, capsys, body, message):
    head = f'extends = "{shipped_dir() / "owners.toml"}"\n'
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
    assert "reach_share" in set(pd.read_parquet(again.dataset).metric)


# ----------------------------------------------------------------------------------------------
# Faults: damaged records, leftovers, durability, keys, foreign folders, plan size, permissions
# ----------------------------------------------------------------------------------------------
TINY = """
name = "{name}"
model = "ishigami"
design = "{design}"
samples = {samples}
replicates = {replicates}
levels = {levels}
seed = 1
metrics = ["y"]
[uncertainties]
x1 = [-3.0, 3.0]
x2 = [-3.0, 3.0]
{x3}
"""


def tiny_sweep(tmp_path, name="tiny", x3="x3 = [-3.0, 3.0]", **keys):
    """A sweep of the analytic Ishigami function: its runs take microseconds."""
    path = tmp_path / f"{name}.toml"
    keys = {"design": "random", "samples": 6, "replicates": 1, "levels": 3, **keys}
    path.write_text(TINY.format(name=name, x3=x3, **keys))
    return load_sweep(path)


def test_damaged_records_are_recomputed_and_said(tmp_path, capsys):
    sweep = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(sweep, out)
    expected = first.dataset.read_bytes()
    paths = [out / "runs" / f"{t['key']}.json" for t in plan(sweep)]
    good = paths[5].read_text()
    paths[0].write_text(paths[0].read_text()[:25])  # truncated
    paths[1].write_text("")  # empty
    paths[2].write_text(json.dumps({"key": "x"}))  # not a record
    paths[3].write_text(good)  # another run's record
    rows = json.loads(good)
    rows["key"] = json.loads(paths[4].read_text())["key"]
    rows["rows"]["value"] = []  # rows of unequal lengths
    paths[4].write_text(json.dumps(rows))
    capsys.readouterr()
    report = run_sweep(sweep, out)
    assert report.computed == 5 and report.skipped == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5 and all("damaged run record" in line for line in err)
    assert {line.split("damaged run record ")[1].split(":")[0] for line in err} == {
        str(p) for p in paths[:5]
    }
    assert report.dataset.read_bytes() == expected  # recomputed, the same numbers
    again = run_sweep(sweep, out)
    assert again.computed == 0 and again.skipped == 6
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])  # Ctrl-C, SIGTERM
def test_an_interrupted_sweep_has_written_every_finished_run(tmp_path, interrupt):
    """Records are written on background threads: an interrupt waits for them."""
    sweep = tiny_sweep(tmp_path, samples=200)
    out = tmp_path / "out"

    def progress(done, failed, total):
        if done == 150:
            raise interrupt()

    with pytest.raises(interrupt):
        run_sweep(sweep, out, progress=progress)
    assert len(list((out / "runs").glob("*.json"))) == 150
    assert not list(out.rglob("*.tmp"))
    report = run_sweep(sweep, out)
    assert report.skipped == 150 and report.computed == 50


def test_leftovers_of_killed_writers_are_removed_on_resume(tmp_path):
    sweep = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    run_sweep(sweep, out)
    (out / "analysis").mkdir()
    (out / "analysis" / "notes.md").write_text("mine")
    planted = [
        out / "runs" / ".abc.json.1234.tmp",
        out / ".manifest.json.99.tmp",
        out / ".sweep.parquet.ab12cd.tmp",
    ]
    for path in planted:
        path.write_text("half")
    (out / ".analysis.k3j2.partial").mkdir()
    (out / ".analysis.k3j2.partial" / "plot.png").write_bytes(b"x")
    report = run_sweep(sweep, out)
    assert report.computed == 0
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.partial"))
    assert (out / "analysis" / "notes.md").read_text() == "mine"


def test_records_are_fsynced_before_their_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def spy_replace(src, dst, *args, **kwargs):
        events.append(("replace", str(src), str(dst)))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    sweep = tiny_sweep(tmp_path)
    out = (tmp_path / "out").resolve()
    run_sweep(sweep, out)
    written = [*(out / "runs").glob("*.json"), out / "manifest.json", out / "sweep.parquet"]
    assert len(written) == 8
    for path in written:
        i, (_, src, _) = next((i, e) for i, e in enumerate(events) if e[2:] == (str(path),))
        assert ("fsync", src) in events[:i], f"{path.name} renamed before its data was synced"
    last_record = max(i for i, e in enumerate(events) if e[0] == "replace" and "/runs/" in e[2])
    assert ("fsync", str(out / "runs")) in events[last_record:]  # the renames, too


def test_run_keys_follow_the_model_source(tmp_path, monkeypatch):
    digest = sweeps.model_digest()
    assert len(digest) == 64 and sweeps.model_digest() is digest  # computed once per process
    sweep = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    run_sweep(sweep, out)
    keys = [t["key"] for t in plan(sweep)]
    monkeypatch.setattr(sweeps, "model_digest", lambda: "0" * 64)  # the model changed
    changed = plan(sweep)
    assert [t["point"] for t in changed] == [t["point"] for t in plan(sweep)]
    assert not {t["key"] for t in changed} & set(keys)
    report = run_sweep(sweep, out)
    assert report.computed == 6 and report.skipped == 0  # nothing stale reused


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "kind", ["run results", "another sweep", "same name, other file", "notes", "a file"]
)
def test_out_folder_that_is_not_this_sweeps_is_refused(tmp_path, capsys, kind):
    sweep = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    if kind == "run results":
        out.mkdir()
        manifest = {"scenarios": [{"name": "demo"}], "seeds": [1]}
        (out / "manifest.json").write_text(json.dumps(manifest))
        (out / "summary.csv").write_text("scenario,metric,value\n")
    elif kind == "another sweep":
        run_sweep(tiny_sweep(tmp_path, name="other", samples=3), out)
    elif kind == "same name, other file":
        (tmp_path / "elsewhere").mkdir()
        run_sweep(tiny_sweep(tmp_path / "elsewhere", samples=3), out)
    elif kind == "notes":
        out.mkdir()
        (out / "notes.md").write_text("my notes")
    else:
        out.write_text("a file")
    before = _files(out) if out.is_dir() else out.read_bytes()
    with pytest.raises(sweeps.SweepError, match=f"--out {out}") as err:
        run_sweep(sweep, out)
    assert isinstance(err.value, ParameterError) and "\n" not in str(err.value)
    capsys.readouterr()
    assert main(["sweep", str(sweep.path), "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and str(out) in lines[0]
    assert (_files(out) if out.is_dir() else out.read_bytes()) == before  # nothing written


def test_out_folder_that_is_empty_or_this_sweeps_is_used(tmp_path):
    sweep = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert run_sweep(sweep, out).computed == 6  # an empty folder
    # The same sweep file, edited: resumes in its folder, the unchanged runs reused.
    sweep.path.write_text(sweep.path.read_text().replace("samples = 6", "samples = 8"))
    report = run_sweep(load_sweep(sweep.path), out)
    assert report.skipped == 6 and report.computed == 2
    # A sweep killed before its manifest left at most an empty runs/ and a temp file.
    early = tmp_path / "early"
    (early / "runs").mkdir(parents=True)
    (early / ".manifest.json.a1b2.tmp").write_text("{")
    assert run_sweep(sweep, early).computed == 6


def test_plan_size_is_counted_before_planning(tmp_path, monkeypatch, capsys):
    cases = [
        dict(design="grid", x3="x3 = {values = [0.0, 1.0]}"),
        dict(design="random", x3="x3 = {values = [0.0, 1.0, 2.0]}", replicates=2),
        dict(design="lhs", samples=5, x3="x3 = {values = [0.0, 1.0]}"),
        dict(design="lhs", samples=5),
        dict(design="random", samples=3, replicates=3),
        dict(design="sobol", samples=8),
        dict(design="morris", samples=4, replicates=2),
    ]
    for case in cases:
        sweep = tiny_sweep(tmp_path, **case)
        assert sweeps.count_runs(sweep) == len(plan(sweep)), case
    all_listed = sweeps.dataclasses.replace(
        tiny_sweep(tmp_path),
        design="lhs",
        factors=tuple(
            sweeps.Factor(f"x{i}", "uncertainty", values=(0.0, 1.0, 2.0)) for i in (1, 2, 3)
        ),
    )
    assert sweeps.count_runs(all_listed) == len(plan(all_listed)) == 27

    # 4,194,304 points x 100 replicates, 10^9 points: refused at once, saying how to insist.
    huge = tiny_sweep(tmp_path, name="huge", design="sobol", samples=2**19, replicates=100)
    t0 = time.perf_counter()
    with pytest.raises(sweeps.SweepError, match=r"262,144,000 runs .*--yes"):
        plan(huge)
    with pytest.raises(sweeps.SweepError, match="--yes"):
        run_sweep(huge, tmp_path / "huge")
    grid = tiny_sweep(tmp_path, name="grid", design="grid", levels=1000)
    with pytest.raises(sweeps.SweepError, match="1,000,000,000 runs"):
        plan(grid)
    assert time.perf_counter() - t0 < 1 and not (tmp_path / "huge").exists()
    capsys.readouterr()
    assert main(["sweep", str(grid.path), "--out", str(tmp_path / "grid"), "--quiet"]) == 2
    assert "--yes" in capsys.readouterr().err and not (tmp_path / "grid").exists()

    # Above a (lowered) limit only with allow_large.
    monkeypatch.setattr(sweeps, "MAX_RUNS", 5)
    small = tiny_sweep(tmp_path)
    with pytest.raises(sweeps.SweepError, match="6 runs"):
        run_sweep(small, tmp_path / "small")
    assert not (tmp_path / "small").exists()
    assert run_sweep(small, tmp_path / "small", allow_large=True).computed == 6


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)],
    ids=["umask 022", "umask 027"],
)
def test_sweep_files_respect_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        run_sweep(tiny_sweep(tmp_path), tmp_path / "out")
    finally:
        os.umask(old)
    paths = [tmp_path / "out", *(tmp_path / "out").rglob("*")]
    assert len(paths) == 10
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (dir_mode if path.is_dir() else file_mode), (path.name, oct(mode))


def test_a_finished_sweep_says_when_and_with_what_code(tmp_path):
    sweep = tiny_sweep(tmp_path)
    run_sweep(sweep, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["started"] <= manifest["finished"]
    assert manifest["git_commit"] and manifest["versions"]["fishschool"] and manifest["command"]
