"""What a notebook needs, in one import: ``from analysis import api``.

Run and compare scenarios in-process, explain a difference by mechanism (``explain``, exact
Shapley values, and ``plot_explain``), load saved runs and sweeps, summarise with confidence
intervals, and draw the standard figures::

    >>> from analysis import api
    >>> exp = api.compare("owners", "streamer", replicates=2,
    ...                   sets={"world.consumers": 2000, "owners.count": 10, "world.days": 10})
    >>> table = api.summarise(exp, metrics=("return_rate",), channels=("owners", "streamer"))
    >>> sorted(table.columns)
    ['channel', 'hi', 'lo', 'mean', 'metric', 'n', 'scenario']

Every function returns data or a matplotlib figure; none prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from analysis import plots
from analysis.report import Results, comparison_table
from analysis.stats import paired_differences, scenario_means
from sim.experiments.experiment import Experiment, run_experiment
from sim.experiments.scenario import default, load
from sim.world.model import CommerceModel

Tables = Experiment | Results


def _sets(sets: Mapping[str, Any] | None) -> list[str]:
    """``--set`` items from a dict; values written as TOML (JSON is TOML for these values)."""
    import json

    return [f"{k}={json.dumps(v)}" for k, v in (sets or {}).items()]


def scenario(name: str = "default", sets: Mapping[str, Any] | None = None):
    """A scenario by file or shipped name ("default": the model's defaults), with overrides
    given as a dict of key paths (``{"world.consumers": 5000, "streamer.hype": 1.5}``)."""
    overrides = _sets(sets)
    return default(overrides) if name == "default" else load(name, overrides)


def run_scenario(
    name: str = "default",
    *,
    replicates: int | None = None,
    seed: int | None = None,
    workers: int | None = 1,
    sets: Mapping[str, Any] | None = None,
) -> Experiment:
    """Run one scenario over its replicates (in this process unless ``workers`` > 1)."""
    return run_experiment([scenario(name, sets)], replicates=replicates, seed=seed, workers=workers)


def compare(
    *names: str,
    replicates: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
    sets: Mapping[str, Any] | None = None,
) -> Experiment:
    """Run scenarios on common random numbers (same seeds replicate by replicate)."""
    return run_experiment(
        [scenario(n, sets) for n in names], replicates=replicates, seed=seed, workers=workers
    )


def simulate(
    name: str = "default",
    days: int | None = None,
    sets: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> CommerceModel:
    """A model object after ``days`` days (for drawings and for looking inside)."""
    s = scenario(name, sets)
    params = s.params if seed is None else s.params.with_overrides({"seed": seed})
    model = CommerceModel(params)
    for _ in range(days if days is not None else params.world.days):
        model.step()
    return model


def load_results(folder: str | Path) -> Results:
    """A results folder written by ``fishschool run`` or ``compare``."""
    return Results.load(folder)


def load_sweep(folder: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A sweep folder: its tidy data (one row per run, channel and metric) and manifest."""
    from analysis.sensitivity import load

    return load(folder)


def summarise(
    tables: Tables,
    metrics: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Mean and confidence interval over replicates, per scenario, channel and metric."""
    s = tables.summary
    if metrics is not None:
        s = s[s.metric.isin(metrics)]
    if channels is not None:
        s = s[s.channel.isin(channels)]
    return scenario_means(s, level)


def differences(tables: Tables, baseline: str | None = None) -> pd.DataFrame:
    """Paired differences of every scenario from ``baseline`` (default: the first)."""
    names = _names(tables)
    return paired_differences(tables.summary, baseline or names[0])


def table(tables: Tables) -> pd.DataFrame:
    """The side-by-side table of ``fishschool compare`` (strings with intervals)."""
    return comparison_table(tables.summary, _names(tables))


def _names(tables: Tables) -> list[str]:
    return tables.names if isinstance(tables, Experiment) else tables.scenarios


def _consumers(tables: Tables) -> dict[str, int]:
    if isinstance(tables, Experiment):
        return {s.name: s.params.world.consumers for s in tables.scenarios}
    return {s["name"]: s["parameters"]["world"]["consumers"] for s in tables.manifest["scenarios"]}


def plot_reach(tables: Tables) -> Figure:
    return plots.reach_over_time(tables.timeseries, _names(tables), _consumers(tables))


def plot_funnel(tables: Tables) -> Figure:
    return plots.funnel(tables.summary, _names(tables))


def plot_return_rates(tables: Tables) -> Figure:
    return plots.rate_by_channel(
        tables.summary, _names(tables), "return_rate", "Return rate (returns / delivered orders)"
    )


def plot_costs(tables: Tables) -> Figure:
    return plots.cost_breakdown(tables.summary, _names(tables))


def plot_trust(tables: Tables) -> Figure:
    return plots.trust_over_time(tables.timeseries, _names(tables))


def plot_owner_earnings(tables: Tables) -> Figure:
    return plots.owner_earnings_lorenz(tables.owners, _names(tables))


def plot_events(tables: Tables, scenario_name: str, events: Mapping[str, int]) -> Figure:
    return plots.event_before_after(tables.timeseries, scenario_name, dict(events))


def explain(
    a: str,
    b: str | None = None,
    *,
    channels: Sequence[str] | None = None,
    channel: str | Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    workers: int | None = 1,
    sets: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Split a difference into mechanism groups with exact Shapley values (:mod:`analysis.explain`).

    ``explain("owners", "lax_selection")``: scenario mode, B - A per metric and channel.
    ``explain("hybrid", channels=("owners", "streamer"))``: channel mode, metric(owners) -
    metric(streamer) within one scenario, with the part ``structure`` for what the swaps leave.
    ``sets`` applies to every scenario (as ``--set``); ``channel`` picks the channels reported
    in scenario mode. In this process unless ``workers`` > 1 (then local processes).

    Returns the tidy table ``metric, channel, part, value, lo, hi, start, end, parameters``
    (``lo``/``hi``: 95% interval over replicates; ``parameters``: each part's parameter
    changes); its ``attrs`` hold ``start_label``, ``end_label`` and ``mode``.
    """
    from analysis import explain as ex
    from sim.experiments.engine import make_executor

    metrics = tuple(metrics or ex.DEFAULT_METRICS)
    if isinstance(channel, str):
        channel = [channel]
    executor, close, _ = make_executor(workers, None)
    try:
        e = ex.explain(
            [scenario(name, sets) for name in (a, b) if name is not None],
            channels,
            metrics=metrics,
            channels=channel,
            replicates=replicates,
            seed=seed,
            executor=executor,
        )
    finally:
        close()
    table = e.table.copy()
    table.attrs.update(start_label=e.start_label, end_label=e.end_label, mode=e.mode)
    return table


def load_explanation(folder: str | Path) -> pd.DataFrame:
    """The table of a folder written by ``fishschool explain`` (labels from its manifest)."""
    import json

    folder = Path(folder)
    table = pd.read_csv(folder / "explain.csv")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    table.attrs.update(
        start_label=manifest["start"], end_label=manifest["end"], mode=manifest["mode"]
    )
    return table


def plot_explain(
    table: pd.DataFrame,
    channels: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> Figure:
    """Waterfalls of :func:`explain`'s table: one panel per metric and channel."""
    return plots.explain_waterfall(
        table, list(channels) if channels else None, list(metrics) if metrics else None
    )


def plot_graph(model: CommerceModel, size: int = 400, seed: int = 0) -> Figure:
    """A sample of the social graph coloured by channel and state (see :func:`simulate`)."""
    return plots.social_graph(model, size, seed)
