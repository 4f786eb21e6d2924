"""Experiments: scenarios run over replicates, in parallel, on common random numbers.

An experiment runs every scenario for the same replicate seeds (derived from one base seed with
numpy's SeedSequence), so scenario B's replicate r lives in the same world as scenario A's
replicate r: same graph, consumers, groups and followers, and the same daily random streams as
far as the two scenarios do the same things. Differences between scenarios are then paired.

Each run is a task of the run engine (:mod:`sim.experiments.engine`), so it can go to any
``concurrent.futures.Executor``: the same inputs give the same numbers serially or in parallel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sim.experiments.engine import default_workers, executor_for, run_all
from sim.experiments.provenance import now
from sim.experiments.scenario import Scenario, replicate_seeds


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
    """The runs of an experiment as :mod:`~sim.experiments.engine` tasks, and the replicate
    seeds they share."""
    seeds = replicate_seeds(seed, replicates)
    out = []
    for s in scenarios:
        params = s.params.to_dict()
        for r, rs in enumerate(seeds):
            out.append({"params": params, "seed": rs, "tags": {"scenario": s.name, "replicate": r}})
    return out, seeds


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
    started, t0 = now(), time.perf_counter()
    if executor is not None:
        results, used = run_all(todo, executor, progress), workers or default_workers()
    else:
        used = min(workers or default_workers(), len(todo))
        with executor_for(used) as (pool, _):
            results = run_all(todo, pool, progress)
    wall = time.perf_counter() - t0
    return Experiment(
        scenarios=list(scenarios),
        seed=seed,
        seeds=seeds,
        summary=pd.concat([r["summary"] for r in results], ignore_index=True),
        timeseries=pd.concat([r["timeseries"] for r in results], ignore_index=True),
        owners=pd.concat([r["owners"] for r in results], ignore_index=True),
        timings={
            "started": started,
            "wall_s": wall,
            "runs": len(results),
            "workers": used,
            "run_s": [r["timings"]["simulate_s"] + r["timings"]["build_s"] for r in results],
        },
    )
