"""Benchmark sweep throughput: serial, two local processes and a two-worker Dask cluster.

Run with ``.venv/bin/python benchmarks/bench_sweep.py`` (``--points N`` changes the size,
``--repeat N`` runs the three modes N times, interleaved, and reports medians).

The same sweep (the shipped ``hybrid`` scenario at 20,000 consumers, 100 owners, 30 days; a
``random`` design over ``platform.selection_strictness`` and ``purchase.trust``, one replicate)
runs three ways, each in its own freshly spawned process and into its own fresh output folder,
as ``fishschool sweep`` runs it (:func:`sim.experiments.engine.make_executor`):

* serial: ``run_sweep(sweep, out, executor=None)``;
* local: ``make_executor(2, None)``, 2 ``forkserver`` processes;
* dask: a loopback cluster the benchmark starts and stops as real processes
  (``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1``, nanny and its default
  ``MALLOC_TRIM_THRESHOLD_`` included), used through ``make_executor(None, address)``.

Throughput is runs per minute of ``make_executor`` and the ``run_sweep`` call together (worker
start-up and the workers' imports count, as does the gathering of ``sweep.parquet``); the
time to start the cluster before it is reported separately as set-up. The per-run overhead is
what the sweep cost beyond the model: (workers x sweep seconds - the runs' seconds in the
model, build, days and tables) / runs. The ``sweep.parquet`` datasets must all be identical
(exit 1 if not). The figures are printed and written to ``results/bench_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "bench_sweep.json"
BASE = ROOT / "scenarios" / "hybrid.toml"
DASK = Path(sys.executable).parent / "dask"
WORKERS = 2
SEED = 7
NOISE_CPUS = 0.1  # other processes using more CPU than this make a mode's figures unclean
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
MODES = {
    "serial": "serial (this process)",
    "local": f"{WORKERS} local processes",
    "dask": f"Dask, {WORKERS} workers",
}

SWEEP_TOML = """\
# Benchmark sweep (written by benchmarks/bench_sweep.py)
name = "bench_sweep"
extends = {base}
design = "random"
samples = {points}
replicates = 1
seed = {seed}
metrics = ["reach_share", "visit_conversion", "return_rate", "brand_profit"]

[world]
consumers = 20_000
days = 30

[levers]
owners.count = 100
platform.selection_strictness = [0.0, 0.8]

[uncertainties]
purchase.trust = [1.0, 3.0]
"""


# ---------------------------------------------------------------------------------------------
# The Dask cluster: real scheduler and worker processes on loopback
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start a cluster process in its own session (so a stuck one is killed with its children)."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    """Terminate a cluster process (SIGTERM); kill its process group if it does not exit."""
    if proc.poll() is not None:
        return f"already exited ({proc.returncode})"
    proc.terminate()
    try:
        proc.wait(timeout)
        return "terminated"
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group of this process only (own session)
    except ProcessLookupError:
        pass
    proc.wait(10)
    return "killed"


def cpu_snapshot() -> dict[int, tuple[int, int, int, int]] | None:
    """pid -> (ppid, process group, start time, CPU ticks with waited-for children) (Linux)."""
    snap = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # fields[0] is field 3 (state): ppid 4, pgrp 5, utime..cstime 14-17, start time 22
        # init reaps orphans (ours too: a finished pool's forkserver): count its own time only
        ticks = sum(int(x) for x in fields[11 : 13 if pid == 1 else 15])
        snap[pid] = (int(fields[1]), int(fields[2]), int(fields[19]), ticks)
    return snap


def other_cpu_seconds(before: dict | None, after: dict | None) -> float | None:
    """CPU seconds spent between two snapshots by processes outside this benchmark.

    Ours: this process, its descendants (the cluster runs in its own session, still a child)
    and its process group (a forkserver outlives the pool that started it, re-parented).
    """
    if before is None or after is None:
        return None
    ours = {os.getpid()}
    group = os.getpgrp()
    changed = True
    while changed:
        changed = False
        for pid, (ppid, pgrp, _, _) in after.items():
            if (ppid in ours or pgrp == group) and pid not in ours:
                ours.add(pid)
                changed = True
    ticks = 0
    for pid, (_, _, start, cpu) in after.items():
        if pid in ours:
            continue
        old = before.get(pid)
        ticks += cpu - old[3] if old is not None and old[2] == start else cpu
    return ticks / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# One mode, in a fresh process
# ---------------------------------------------------------------------------------------------
def run_mode(mode: str, sweep_file: str, out: str, queue) -> None:
    """Run the sweep one way; put a dict of figures (or an error) on ``queue``."""
    try:
        queue.put(_run_mode(mode, Path(sweep_file), Path(out)))
    except BaseException as err:  # reported by the parent
        import traceback

        error = f"{type(err).__name__}: {err}"
        queue.put({"mode": mode, "error": error, "traceback": traceback.format_exc()})


def _timed_sweep(sweep, out: Path, workers: int | None, scheduler: str | None) -> dict:
    """``make_executor`` (worker start-up, warm-up) and ``run_sweep``, timed together."""
    from sim.experiments.engine import make_executor
    from sim.experiments.sweep import run_sweep

    t0 = time.perf_counter()
    executor, close, where = make_executor(workers, scheduler)
    t1 = time.perf_counter()
    try:
        report = run_sweep(sweep, out, executor)
        wall = time.perf_counter() - t0
    finally:
        t2 = time.perf_counter()
        close()
        teardown = time.perf_counter() - t2
    return {
        "where": where,
        "runs": report.total,
        "computed": report.computed,
        "skipped": report.skipped,
        "failures": [f["error"] for f in report.failures],
        "sweep_s": wall,
        "executor_s": t1 - t0,
        "model_s": report.model_s,
        "teardown_s": teardown,
        "dataset": str(report.dataset),
    }


def _run_mode(mode: str, sweep_file: Path, out: Path) -> dict:
    t_start = time.perf_counter()
    from sim.experiments.sweep import load_sweep

    sweep = load_sweep(sweep_file)
    row: dict = {"mode": mode, "label": MODES[mode], "error": None}
    if mode == "serial":
        row["setup_s"] = 0.0
        row.update(_timed_sweep(sweep, out, 1, None))
    elif mode == "local":
        row["setup_s"] = 0.0  # the processes start inside the timed make_executor and sweep
        row.update(_timed_sweep(sweep, out, WORKERS, None))
    else:
        row.update(_run_dask(sweep, out))
    row["process_s"] = time.perf_counter() - t_start
    return row


def _run_dask(sweep, out: Path) -> dict:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = out.parent / f"{out.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    scheduler_cmd = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    scheduler_cmd.append("--no-dashboard")
    worker_cmd = [str(DASK), "worker", address, "--nworkers", str(WORKERS), "--nthreads", "1"]
    worker_cmd.append("--no-dashboard")
    row: dict = {"address": address, "commands": [scheduler_cmd, worker_cmd]}
    procs: dict[str, subprocess.Popen] = {}
    t0 = time.perf_counter()
    try:
        procs["scheduler"] = start(scheduler_cmd, logs / "scheduler.log")
        procs["worker"] = start(worker_cmd, logs / "worker.log")
        from distributed import Client

        with Client(address, timeout="60s") as client:  # only to wait for the workers
            client.wait_for_workers(WORKERS, timeout=60)
            row["dask_workers"] = len(client.scheduler_info(n_workers=-1)["workers"])
            # The nanny sets these in its workers (distributed.nanny.pre-spawn-environ); the
            # engine undoes what MALLOC_TRIM_THRESHOLD_ does to glibc (engine module doc).
            row["worker_environ"] = {
                var: sorted(set(client.run(os.getenv, var).values()), key=str)
                for var in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
            }
        row["setup_s"] = time.perf_counter() - t0
        row.update(_timed_sweep(sweep, out, None, address))
    except BaseException as err:
        for name, proc in procs.items():
            err.add_note(f"{name} log ({proc.args[1]}):\n{tail(logs / f'{name}.log')}")
        raise
    finally:
        t1 = time.perf_counter()
        # Workers first, so they do not retry a vanished scheduler.
        row["shutdown"] = {
            name: stop(procs[name]) for name in ("worker", "scheduler") if name in procs
        }
        row["teardown_s"] = row.get("teardown_s", 0.0) + time.perf_counter() - t1
    return row


def in_fresh_process(mode: str, sweep_file: Path, out: Path) -> dict:
    """Run one mode in a newly spawned (non-daemon: it starts processes of its own) process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_mode, args=(mode, str(sweep_file), str(out), queue))
    snap = cpu_snapshot()
    t0 = time.perf_counter()
    proc.start()
    try:
        row = queue.get(timeout=3600)
    except Exception as err:  # the child died without a word
        row = {"mode": mode, "label": MODES[mode], "error": f"no result ({type(err).__name__})"}
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        proc.join()
    row["wall_s"] = time.perf_counter() - t0
    row["exitcode"] = proc.exitcode
    other = other_cpu_seconds(snap, cpu_snapshot())
    row["other_cpu_s"] = other
    row["other_cpus"] = other / row["wall_s"] if other is not None else None
    return row


# ---------------------------------------------------------------------------------------------
# The parent: write the sweep, run the modes, compare, report
# ---------------------------------------------------------------------------------------------
def compare(rows: list[dict], modes: list[str]) -> tuple[bool, dict[str, str | None]]:
    """Are the ``sweep.parquet`` datasets of every run identical to the first serial one?"""
    import pandas as pd
    from pandas.testing import assert_frame_equal

    ref = next((r for r in rows if r["mode"] == "serial" and not r.get("error")), None)
    if ref is None:
        return False, {r["run_id"]: "no serial dataset to compare with" for r in rows}
    expected = pd.read_parquet(ref["dataset"])
    diffs: dict[str, str | None] = {}
    for r in rows:
        if r is ref:
            continue
        if r.get("error"):
            diffs[r["run_id"]] = "no dataset (the mode failed)"
            continue
        try:
            assert_frame_equal(pd.read_parquet(r["dataset"]), expected, check_exact=True)
            diffs[r["run_id"]] = None
        except AssertionError as err:
            diffs[r["run_id"]] = str(err)
    ran = {r["mode"] for r in rows if not r.get("error")}
    return all(d is None for d in diffs.values()) and ran == set(modes), diffs


def slots(mode: str) -> int:
    return 1 if mode == "serial" else WORKERS


def summarise(rows: list[dict]) -> list[dict]:
    """One row per mode: medians over its repeats, speed-up against serial's median, and the
    range of the paired speed-ups (each repeat's serial sweep over its own)."""
    import statistics

    for r in rows:
        if r.get("error"):
            continue
        r["runs_per_min"] = 60 * r["runs"] / r["sweep_s"]
        r["model_ms_per_run"] = 1000 * r["model_s"] / max(1, r["computed"])
        r["overhead_ms_per_run"] = (
            1000 * (slots(r["mode"]) * r["sweep_s"] - r["model_s"]) / max(1, r["computed"])
        )
    ok = [r for r in rows if not r.get("error")]
    serial = [r["sweep_s"] for r in ok if r["mode"] == "serial"]
    serial_median = statistics.median(serial) if serial else None
    out = []
    for mode, label in MODES.items():
        mine = [r for r in ok if r["mode"] == mode]
        failed = [r for r in rows if r["mode"] == mode and r.get("error")]
        if not mine:
            error = failed[0]["error"] if failed else "not run"
            out.append({"mode": mode, "label": label, "error": error})
            continue
        med = {
            k: statistics.median(r[k] for r in mine)
            for k in (
                "setup_s",
                "executor_s",
                "sweep_s",
                "process_s",
                "model_ms_per_run",
                "overhead_ms_per_run",
            )
        }
        others = [r["other_cpus"] for r in mine if r.get("other_cpus") is not None]
        paired = [
            s["sweep_s"] / r["sweep_s"]
            for r in mine
            for s in ok
            if s["mode"] == "serial" and s["repeat"] == r["repeat"]
        ]
        out.append(
            {
                "mode": mode,
                "label": label,
                "error": None,
                "repeats": len(mine),
                "failed_repeats": len(failed),
                "runs": mine[0]["runs"],
                **med,
                "runs_per_min": 60 * mine[0]["runs"] / med["sweep_s"],
                "runs_per_min_with_setup": 60 * mine[0]["runs"] / (med["setup_s"] + med["sweep_s"]),
                "speedup": serial_median / med["sweep_s"] if serial_median else None,
                "paired_speedups": paired,
                "other_cpus": statistics.median(others) if others else None,
                "failures": sorted({f for r in mine for f in r["failures"]}),
            }
        )
    return out


def report(summary: list[dict], points: int, repeat: int, identical: bool, diffs: dict) -> None:
    print()
    print(
        f"Sweep: hybrid, 20,000 consumers, 100 owners, 30 days; random design, {points} points "
        f"x 1 replicate; {os.cpu_count()} CPUs; medians of {repeat} interleaved repeat(s)"
    )
    head = (
        f"{'mode':<24} {'runs':>5} {'setup s':>8} {'sweep s':>8} {'runs/min':>9} "
        f"{'speed-up':>9} {'paired':>11} {'model ms':>9} {'overhead':>9} {'other CPUs':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in summary:
        if r.get("error"):
            print(f"{r['label']:<24} FAILED: {r['error']}")
            continue
        speedup = f"{r['speedup']:.2f}x" if r.get("speedup") is not None else "-"
        paired = r["paired_speedups"]
        span = f"{min(paired):.2f}-{max(paired):.2f}" if len(paired) > 1 else "-"
        other = f"{r['other_cpus']:.2f}" if r.get("other_cpus") is not None else "-"
        print(
            f"{r['label']:<24} {r['runs']:>5} {r['setup_s']:>8.2f} {r['sweep_s']:>8.2f} "
            f"{r['runs_per_min']:>9.1f} {speedup:>9} {span:>11} {r['model_ms_per_run']:>9.0f} "
            f"{r['overhead_ms_per_run']:>9.1f} {other:>11}"
        )
        if r["failures"]:
            print(f"  {len(r['failures'])} failed runs, e.g. {r['failures'][0]}")
    print(
        "(sweep s = make_executor and the run_sweep call, worker start-up and imports included;"
        "\n setup s = starting the Dask cluster before it; speed-up = serial sweep s / sweep s"
        " (medians),\n paired = its range over the repeats; model ms = a run's build, days and"
        " tables;"
        "\n overhead = (workers x sweep s - the runs' model seconds) / runs, in ms;\n other "
        "CPUs = mean CPUs used by processes outside the benchmark meanwhile)"
    )
    noisy = [r["mode"] for r in summary if (r.get("other_cpus") or 0) > NOISE_CPUS]
    if noisy:
        print(
            f"WARNING: other work used over {NOISE_CPUS} CPU during {', '.join(noisy)}: "
            "those figures are not clean; rerun on an idle machine"
        )
    print(f"identical results: {'yes' if identical else 'no'}")
    for run_id, diff in diffs.items():
        if diff is not None:
            print(f"  {run_id} differs from serial: {diff}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=96, help="design points (default 96)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of every mode, interleaved (default 1)"
    )
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = ap.parse_args(argv)
    if args.points < 1 or args.repeat < 1:
        ap.error("--points and --repeat must be at least 1")
    if "serial" not in args.modes:
        ap.error("--modes must include serial (the reference)")
    if not DASK.is_file():
        ap.error(f"{DASK} not found: the Dask CLI is needed (pip install distributed)")

    # Single-threaded numeric libraries everywhere (inherited by every child and cluster process).
    for var in THREAD_VARS:
        os.environ[var] = "1"

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        tmp = Path(tmp)
        sweep_file = tmp / "bench_sweep.toml"
        text = SWEEP_TOML.format(base=json.dumps(str(BASE)), points=args.points, seed=SEED)
        sweep_file.write_text(text, encoding="utf-8")
        for i in range(args.repeat):
            for mode in args.modes:
                label = MODES[mode]
                out = tmp / f"out-{mode}-{i}"  # fresh: nothing is reused between runs
                print(f"running {label}: {args.points} runs (repeat {i + 1}) ...", flush=True)
                row = in_fresh_process(mode, sweep_file, out)
                row.update(label=label, repeat=i, run_id=f"{mode}#{i + 1}")
                if row.get("error") and row.get("traceback"):
                    print(row["traceback"], file=sys.stderr)
                rows.append(row)
        identical, diffs = compare(rows, args.modes)
        for r in rows:
            r.pop("dataset", None)  # temporary, gone after the benchmark

    summary = [r for r in summarise(rows) if r["mode"] in args.modes]
    report(summary, args.points, args.repeat, identical, diffs)

    from importlib.metadata import version

    failed_runs = sum(len(r.get("failures", [])) for r in rows)
    out = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "dask": version("dask"),
            "distributed": version("distributed"),
            "numpy": version("numpy"),
            "pandas": version("pandas"),
        },
        "noisy_modes": [r["mode"] for r in summary if (r.get("other_cpus") or 0) > NOISE_CPUS],
        "sweep": {"base": "scenarios/hybrid.toml", "points": args.points, "text": text},
        "workers": WORKERS,
        "repeat": args.repeat,
        "modes": summary,
        "runs": rows,
        "identical": identical,
        "differences": diffs,
        "failed_runs": failed_runs,
        "passed": identical and failed_runs == 0 and not any(r.get("error") for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
