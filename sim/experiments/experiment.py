"""Experiments: scenarios run over replicates, in parallel, on common random numbers.

An experiment runs every scenario for the same replicate seeds (derived from one base seed with
numpy's SeedSequence), so scenario B's replicate r lives in the same world as scenario A's
replicate r: same graph, consumers, groups and followers, and the same daily random streams as
far as the two scenarios do the same things. Differences between scenarios are then paired.

Each run is a pure function of plain data (:func:`run_one`), so it can go to any
``concurrent.futures.Executor``: the same inputs give the same numbers serially or in parallel.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sim.experiments.scenario import Scenario, replicate_seeds
from sim.world.model import run
from sim.world.params import ParameterError, Params


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One replicate of one scenario: ``{"scenario", "replicate", "params"}`` in, tables out."""
    params = Params.from_dict(task["params"])
    result = run(params)
    tag = {"scenario": task["scenario"], "replicate": task["replicate"], "seed": params.seed}

    def tagged(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for i, (k, v) in enumerate(tag.items()):
            df.insert(i, k, v)
        return df

    return {
        **tag,
        "summary": tagged(result.summary),
        "timeseries": tagged(result.timeseries),
        "owners": tagged(result.owners),
        "timings": result.timings,
    }


@dataclass
class Experiment:
    """Results of an experiment: tidy tables with ``scenario`` and ``replicate`` columns."""

    scenarios: list[Scenario]
    seed: int
    seeds: list[int]
    summary: pd.DataFrame
    timeseries: pd.DataFrame
    owners: pd.DataFrame
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.scenarios]


def tasks(
    scenarios: Sequence[Scenario], replicates: int, seed: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """The runs of an experiment as plain data, and the replicate seeds they share."""
    seeds = replicate_seeds(seed, replicates)
    out = []
    for s in scenarios:
        for r, rs in enumerate(seeds):
            params = s.params.with_overrides({"seed": rs}).to_dict()
            out.append({"scenario": s.name, "replicate": r, "params": params})
    return out, seeds


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def run_experiment(
    scenarios: Sequence[Scenario],
    *,
    replicates: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Experiment:
    """Run every scenario for the same replicates; returns the collected tables.

    ``replicates`` and ``seed`` default to the first scenario's. With ``workers=1`` and no
    ``executor`` the runs happen in this process, one after another.
    """
    if not scenarios:
        raise ValueError("an experiment needs at least one scenario")
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must differ: {names}")
    replicates = replicates or scenarios[0].replicates
    seed = scenarios[0].seed if seed is None else seed
    todo, seeds = tasks(scenarios, replicates, seed)
    workers = workers or default_workers()
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    in_process = executor is None and (workers == 1 or len(todo) == 1)
    if in_process:
        for i, task in enumerate(todo):
            results.append(run_one(task))
            if progress:
                progress(i + 1, len(todo))
    else:
        own = executor is None
        # forkserver: forking a process that already runs threads can deadlock its children.
        pool = executor or ProcessPoolExecutor(
            max_workers=min(workers, len(todo)),
            mp_context=mp.get_context("forkserver"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )
        try:
            futures = [pool.submit(run_one, t) for t in todo]
            for i, fut in enumerate(as_completed(futures)):
                results.append(fut.result())
                if progress:
                    progress(i + 1, len(todo))
        finally:
            if own:
                pool.shutdown(cancel_futures=True)
    # Completion order varies with the executor; the tables do not.
    results.sort(key=lambda r: (names.index(r["scenario"]), r["replicate"]))
    wall = time.perf_counter() - t0
    return Experiment(
        scenarios=list(scenarios),
        seed=seed,
        seeds=seeds,
        summary=pd.concat([r["summary"] for r in results], ignore_index=True),
        timeseries=pd.concat([r["timeseries"] for r in results], ignore_index=True),
        owners=pd.concat([r["owners"] for r in results], ignore_index=True),
        timings={
            "wall_s": wall,
            "runs": len(results),
            "workers": 1 if in_process else workers,
            "run_s": [r["timings"]["simulate_s"] + r["timings"]["build_s"] for r in results],
        },
    )


# ----------------------------------------------------------------------------------------------
# Where runs go: one place sets up executors for run, compare, explain, sweep and calibrate.
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
    process. ``close(abort=True)`` stops local processes at once (after Ctrl-C or an error)
    instead of waiting for the runs in flight."""
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
def executor_for(workers: int | None, scheduler: str | None) -> Iterator[tuple]:
    """``make_executor`` as a context: (executor, where); closed on the way out, and its
    processes stopped at once when the block ends by an exception (Ctrl-C, SIGTERM)."""
    executor, close, where = make_executor(workers, scheduler)
    try:
        yield executor, where
    except BaseException:
        close(abort=True)
        raise
    close()
