"""The run engine: one run as a pure function of plain data, and where runs go.

Every command (run, compare, explain, sweep, calibrate) and the notebook API runs the model the
same way:

* :func:`run_one` takes a *task*, a plain dict (so it pickles to any worker), and returns the
  run's tables. The same task gives the same numbers in this process, on local processes and on
  a Dask cluster.
* :func:`run_many` maps :func:`run_one` over tasks on any ``concurrent.futures.Executor`` (or
  in this process when there is none) and yields each task with its result or its error, in
  completion order; callers put results back in their own order.
* :func:`make_executor` / :func:`executor_for` choose the executor: a Dask cluster when a
  scheduler is named, else local processes, else this process.

A task::

    {
        "params": {...},            # a scenario's parameters (Params.to_dict())
        "point": {"returns.misfit": 2.0},   # optional: dotted overrides on top
        "seed": 123,                # the replicate seed (overrides params' seed)
        "tags": {"scenario": "owners", "replicate": 0},  # optional: columns put first
        "tables": ["summary"],      # optional: which tables to return (default: all three)
        "metrics": ["return_rate"], # optional: summary rows kept (default: all)
        "model": "fishschool",      # or "ishigami", an analytic function for verification
    }

The result is ``{"summary": DataFrame, "timeseries": ..., "owners": ..., "timings": {...}}``
with the requested tables only; each table carries the tags as its first columns and the
``seed`` column.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from sim.world.params import ParameterError

TABLES = ("summary", "timeseries", "owners")
MODELS = ("fishschool", "ishigami")  # ishigami: an analytic test function, for verification


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> float:
    """The Ishigami function (Ishigami & Homma 1990), the standard sensitivity test case.

    With x uniform on [-pi, pi]^3 its Sobol indices are known: S1 = (0.314, 0.442, 0),
    ST = (0.558, 0.442, 0.244).

    >>> round(ishigami(np.zeros(3)), 6)
    0.0
    """
    return float(np.sin(x[0]) + a * np.sin(x[1]) ** 2 + b * x[2] ** 4 * np.sin(x[0]))


def run_one(task: Mapping[str, Any]) -> dict[str, Any]:
    """One run of the model (or of the Ishigami function) from a task; see the module doc.

    Returns the requested tables with the task's tags and the seed as first columns, and the
    run's ``timings`` (build and simulation seconds).
    """
    point = dict(task.get("point") or {})
    seed = int(task["seed"])
    tables = tuple(task.get("tables") or TABLES)
    if task.get("model", "fishschool") == "ishigami":
        y = ishigami(np.array(list(point.values()), dtype=float))
        frames = {"summary": pd.DataFrame({"channel": ["all"], "metric": ["y"], "value": [y]})}
        timings = {"build_s": 0.0, "simulate_s": 0.0}
    else:
        from sim.world.model import run
        from sim.world.params import Params

        params = Params.from_dict(dict(task["params"])).with_overrides({**point, "seed": seed})
        result = run(params)
        frames = {name: getattr(result, name) for name in tables}
        timings = dict(result.timings)
    metrics = task.get("metrics")
    if metrics is not None and "summary" in frames:
        summary = frames["summary"]
        frames["summary"] = summary[summary.metric.isin(list(metrics))].reset_index(drop=True)
    tags = {**dict(task.get("tags") or {}), "seed": seed}
    out: dict[str, Any] = {name: _tagged(frames[name], tags) for name in tables if name in frames}
    out["timings"] = timings
    return out


def _tagged(df: pd.DataFrame, tags: Mapping[str, Any]) -> pd.DataFrame:
    df = df.copy()
    for i, (k, v) in enumerate(tags.items()):
        df.insert(i, k, v)
    return df


def run_many(
    tasks: Iterable[Mapping[str, Any]],
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[Mapping[str, Any], dict[str, Any] | None, Exception | None]]:
    """Run every task; yield ``(task, result, None)`` or ``(task, None, error)`` as each ends.

    ``executor=None`` runs them here, one after another, in the given order; otherwise they
    go to the executor and come back in completion order. ``progress(done, total)`` is called
    after each. When the caller stops early (an error it raises, Ctrl-C), runs not started
    yet are cancelled.
    """
    todo = list(tasks)
    if executor is None:
        for i, task in enumerate(todo):
            try:
                result, error = run_one(task), None
            except Exception as err:  # the caller decides: record it or raise it
                result, error = None, err
            if progress:
                progress(i + 1, len(todo))
            yield task, result, error
        return
    futures = {executor.submit(run_one, task): task for task in todo}
    try:
        for i, fut in enumerate(as_completed(futures)):
            try:
                result, error = fut.result(), None
            except Exception as err:
                result, error = None, err
            if progress:
                progress(i + 1, len(todo))
            yield futures[fut], result, error
    finally:
        for fut in futures:
            fut.cancel()


def run_all(
    tasks: Iterable[Mapping[str, Any]],
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Results of every task in the tasks' order; the first failed run's error is raised."""
    todo = list(tasks)
    results: list[dict[str, Any] | None] = [None] * len(todo)
    where = {id(task): i for i, task in enumerate(todo)}
    for task, result, error in run_many(todo, executor, progress):
        if error is not None:
            raise error
        results[where[id(task)]] = result
    return results  # type: ignore[return-value]


def default_workers() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


# ----------------------------------------------------------------------------------------------
# Where runs go
# ----------------------------------------------------------------------------------------------
SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "inproc")


def check_scheduler(text: str) -> str:
    """A Dask scheduler address, SCHEME://HOST[:PORT]; ValueError otherwise.

    >>> check_scheduler("tcp://10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    """
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEDULER_SCHEMES or not rest:
        schemes = ", ".join(f"{s}://" for s in SCHEDULER_SCHEMES)
        raise ValueError(
            f"{text} is not a Dask scheduler address (expected {schemes} and HOST:PORT)"
        )
    return text


def _worker_init(main_pid: int) -> None:
    """In a worker process: Ctrl-C is the main process's to handle (it stops the workers);
    without this every worker prints its own KeyboardInterrupt traceback. A watchdog thread
    ends the worker within a second of the main process's death (``kill -9`` included), so no
    worker runs on for minutes with nobody to report to (the forkserver, not the main
    process, is a worker's parent, so the parent's death is no signal)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, owned by someone else (cannot happen here)
                pass

    threading.Thread(target=watch, name="fishschool-watchdog", daemon=True).start()


def make_executor(workers: int | None, scheduler: str | None):
    """The executor runs go to, how to close it and where it is: a Dask cluster when a
    scheduler is named (or in ``$DASK_SCHEDULER_ADDRESS``), else local processes, else this
    process (executor ``None``). ``close(abort=True)`` stops local processes at once (after
    Ctrl-C or an error) instead of waiting for the runs in flight."""
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            check_scheduler(address)
        except ValueError as err:
            where = "--scheduler" if scheduler else "DASK_SCHEDULER_ADDRESS"
            raise ParameterError(f"{where} {err}") from None
        from distributed import Client

        try:
            client = Client(address, timeout="10s")
        except (OSError, ValueError) as err:
            raise ParameterError(f"--scheduler {address}: cannot connect ({err})") from None
        return (
            client.get_executor(pure=False),
            lambda abort=False: client.close(),
            f"Dask cluster at {address}",
        )
    workers = workers or default_workers()
    if workers == 1:
        return None, lambda abort=False: None, "this process"
    # forkserver: forking a process that already runs threads can deadlock its children.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("forkserver"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )

    def close(abort: bool = False) -> None:
        if abort:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=not abort, cancel_futures=True)

    return pool, close, f"{workers} local processes"


@contextmanager
def executor_for(workers: int | None, scheduler: str | None = None) -> Iterator[tuple]:
    """``make_executor`` as a context: (executor, where); closed on the way out, and its
    processes stopped at once when the block ends by an exception (Ctrl-C, SIGTERM)."""
    executor, close, where = make_executor(workers, scheduler)
    try:
        yield executor, where
    except BaseException:
        close(abort=True)
        raise
    close()
