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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sim.model import run
from sim.params import Params
from sim.scenario import Scenario, replicate_seeds


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
            max_workers=min(workers, len(todo)), mp_context=mp.get_context("forkserver")
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
