"""The run engine's batches: short runs travel together, results and errors come back per run,
workers start warm, and a Dask nanny's malloc setting is undone."""

from __future__ import annotations

import json
import multiprocessing.forkserver
import os
import signal
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sim.experiments import engine
from sim.experiments.engine import (
    RemoteTraceback,
    batch_size,
    make_executor,
    run_batch,
    run_many,
    run_one,
)
from sim.world import allocator
from sim.world.params import ParameterError, Params

SMALL = Params.from_dict(
    {"world": {"consumers": 2000, "days": 5}, "owners": {"count": 10}}
).to_dict()
METRICS = ["return_rate", "reach_share"]


def ishigami_tasks(n: int) -> list[dict]:
    return [
        {
            "seed": 1,
            "point": {"x1": i / n, "x2": 1.0 - i / n, "x3": 0.5},
            "model": "ishigami",
            "metrics": ["y"],
            "form": "rows",
            "index": i,
        }
        for i in range(n)
    ]


class CountingPool(ThreadPoolExecutor):
    """A thread pool that notes the size of every batch submitted to it."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.batches: list[int] = []

    def submit(self, fn, /, *args, **kwargs):
        self.batches.append(len(args[1]))
        return super().submit(fn, *args, **kwargs)


def test_rows_are_the_summary_rows_of_the_kept_metrics():
    task = {"params": SMALL, "seed": 3, "metrics": METRICS, "tables": ["summary"]}
    summary = run_one(task)["summary"]
    rows = run_one({**task, "form": "rows"})
    expected = summary[["channel", "metric", "value"]].to_dict(orient="list")
    assert json.dumps(rows["rows"]) == json.dumps(expected)  # NaN included
    assert set(rows["rows"]["metric"]) == set(METRICS) and rows["timings"]["build_s"] > 0
    tiny = ishigami_tasks(1)[0]
    as_table = run_one({**tiny, "form": "tables"})["summary"]
    assert run_one(tiny)["rows"] == as_table[["channel", "metric", "value"]].to_dict("list")
    with pytest.raises(ValueError, match="form"):
        run_one({**tiny, "form": "csv"})


def test_short_runs_travel_in_batches_and_come_back_one_by_one():
    tasks = ishigami_tasks(600)
    serial = {t["index"]: r for t, r, e in run_many(tasks)}
    seen = []
    with CountingPool(2) as pool:
        got = {}
        for task, result, error in run_many(tasks, pool, lambda d, n: seen.append((d, n))):
            assert error is None
            got[task["index"]] = result
    assert {i: r["rows"] for i, r in got.items()} == {i: r["rows"] for i, r in serial.items()}
    assert seen == [(i + 1, 600) for i in range(600)]  # progress per run, not per batch
    assert sum(pool.batches) == 600
    assert pool.batches[0] == 1  # until a run has told how long runs take
    assert len(pool.batches) < 60 and max(pool.batches) > 10
    assert pool.batches[-1] <= 2  # the last batches shrink: the workers finish together


def test_batch_sizes_follow_run_time_and_balance():
    assert batch_size(100, 2, None) == 1
    assert batch_size(100, 2, 5.0) == 1  # long runs: one a batch
    assert batch_size(100, 2, 0.25) == 4  # about a second of runs
    assert batch_size(8, 2, 0.01) == 2  # no more than half a worker's share of what is left
    assert batch_size(10**6, 4, 1e-7) == engine.MAX_BATCH


def test_a_failing_run_fails_alone_with_its_workers_traceback():
    good = {"params": SMALL, "seed": 1, "metrics": METRICS, "form": "rows"}
    bad = {**good, "point": {"delivery.lag_min": 99}}
    outcomes, seconds = run_batch({}, [good, bad, good])
    assert seconds > 0
    assert [o[1] is None for o in outcomes] == [True, False, True]
    assert json.dumps(outcomes[0][0]["rows"]) == json.dumps(outcomes[2][0]["rows"])
    _, error, text = outcomes[1]
    assert isinstance(error, ParameterError) and "lag_min" in str(error)
    assert "Traceback" in text and "with_overrides" in text
    with CountingPool(1) as pool:
        results = list(run_many([good, bad], pool))
    errors = [e for _, _, e in results if e is not None]
    assert len(errors) == 1 and isinstance(errors[0].__cause__, RemoteTraceback)
    assert "with_overrides" in "".join(traceback.format_exception(errors[0]))


def test_stopping_early_submits_nothing_more():
    with CountingPool(1) as pool:
        runs = run_many(ishigami_tasks(200), pool)
        next(runs)
        runs.close()
        assert len(pool.batches) <= 3  # the window (two batches a worker) and one more


def test_a_broken_executor_fails_the_runs_not_the_caller():
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    results = list(run_many(ishigami_tasks(3), pool))
    assert len(results) == 3 and all(isinstance(e, RuntimeError) for _, _, e in results)


def _signal_mask(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)), 16)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_local_workers_start_warm_and_deaf_to_ctrl_c():
    server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    started_here = server._forkserver_pid is None  # not by an earlier test's pool
    executor, close, _ = make_executor(2, None)
    try:
        done = executor.submit(engine._worker_setup).result()
        assert done["pid"] != os.getpid() and done["import_s"] >= 0
        glibc = allocator._mallopt() is not None and not os.environ.get(allocator.OPT_OUT)
        assert done["malloc_reused"] is glibc
        sigint = 1 << (signal.SIGINT - 1)
        if started_here:  # SIGINT blocked from its first instant
            assert _signal_mask(server._forkserver_pid, "SigBlk") & sigint
        assert _signal_mask(done["pid"], "SigIgn") & sigint
        assert not _signal_mask(os.getpid(), "SigBlk") & sigint  # this process: as it was
    finally:
        close()
