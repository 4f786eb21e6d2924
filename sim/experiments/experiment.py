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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
    draws: list[dict[str, Any]] | None = None  # per replicate, when drawn from a posterior

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.scenarios]


def posterior_draws(posterior: pd.DataFrame, seeds: Sequence[int]) -> list[dict[str, float | int]]:
    """One draw of the uncertain parameters per replicate from a calibration's weighted
    posterior samples (``posterior_samples.csv``: a column per parameter and ``weight``), each
    drawn by weight with the replicate's own seed: the same seeds, the same draws.
    """
    from sim.experiments.calibration import typed

    names = [c for c in posterior.columns if c != "weight"]
    weights = posterior["weight"].to_numpy(dtype=float)
    weights = weights / weights.sum()
    draws = []
    for s in seeds:
        i = np.random.default_rng(s).choice(len(posterior), p=weights)
        draws.append({n: typed(n, float(posterior[n].iloc[i])) for n in names})
    return draws


def tasks(
    scenarios: Sequence[Scenario],
    replicates: int,
    seed: int,
    draws: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """The runs of an experiment as :mod:`~sim.experiments.engine` tasks, and the replicate
    seeds they share. ``draws``: parameter values per replicate (a posterior draw), applied to
    every scenario's replicate alike, so pairs still share their parameters."""
    seeds = replicate_seeds(seed, replicates)
    out = []
    for s in scenarios:
        params = s.params.to_dict()
        for r, rs in enumerate(seeds):
            task = {"params": params, "seed": rs, "tags": {"scenario": s.name, "replicate": r}}
            if draws is not None:
                task["point"] = dict(draws[r])
            out.append(task)
    return out, seeds


def run_experiment(
    scenarios: Sequence[Scenario],
    *,
    replicates: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
    posterior: pd.DataFrame | None = None,
) -> Experiment:
    """Run every scenario for the same replicates; returns the collected tables.

    ``replicates`` and ``seed`` default to the first scenario's. With ``workers=1`` and no
    ``executor`` the runs happen in this process, one after another. ``posterior``: weighted
    samples of a calibration; each replicate then draws its uncertain parameters from them
    (:func:`posterior_draws`), so intervals include parameter uncertainty.
    """
    if not scenarios:
        raise ValueError("an experiment needs at least one scenario")
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must differ: {names}")
    replicates = replicates or scenarios[0].replicates
    seed = scenarios[0].seed if seed is None else seed
    seeds = replicate_seeds(seed, replicates)
    draws = posterior_draws(posterior, seeds) if posterior is not None else None
    todo, _ = tasks(scenarios, replicates, seed, draws)
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
        draws=draws,
    )
