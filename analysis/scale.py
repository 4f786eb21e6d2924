"""The scale study: do the model's rates hold from 10,000 to 10 million consumers?

The shipped defaults run at several world sizes with everything that counts people scaled
alike: owners in the default proportion (one per 200 consumers,
:func:`sim.experiments.calibration.smaller_world`), the streamer's followers a share of the
consumers and members a matter of each owner's groups (both unchanged). Every rate the model
declares (:data:`RATE_METRICS`: a share, a ratio with a numerator and a denominator, or an
index) is then reported per size and channel with a 95% t-interval over replicates
(:func:`scale_study`), and each size is compared with the largest (:func:`scale_dependence`):
a rate that differs by more than :data:`TOLERANCE` and by more than its interval depends on
scale, and "stable from" is the smallest size from which every larger size agrees.

Each size runs its own replicates, more at small sizes, where one run is noisier
(:func:`default_replicates`), on seeds of its own: numpy SeedSequence children of the base
seed and the size (:func:`size_seeds`), so the sizes are independent samples (the intervals
assume it) and adding a size changes no other size's numbers. Runs go through the run engine
(:mod:`sim.experiments.engine`), in this process, on local processes or on a Dask cluster,
with the same numbers everywhere.

``fishschool scale`` writes :func:`write_scale`'s folder: ``scale.csv`` (the table),
``dependence.csv``, ``runs.csv`` (every run's values), ``scale.png`` (:func:`plot_scale`),
``scale.md`` and ``manifest.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from analysis.plots import CHANNEL_COLOURS
from analysis.stats import mean_ci
from sim.experiments import atomic
from sim.experiments.calibration import smaller_world
from sim.experiments.engine import default_workers, executor_for, run_all
from sim.experiments.scenario import Scenario, default, replicate_seeds
from sim.world.channels import ALL, CHANNELS
from sim.world.metrics import METRICS
from sim.world.params import ParameterError, field_of

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)  # the ladder: a decade a step
# The shipped defaults' length (and the base scenario's): repeat purchase follows each buyer
# for 90 days and is not measured in a run of 90 days or fewer.
DAYS = 120
SEED = 1  # as the shipped scenarios
LEVEL = 0.95
TOLERANCE = 0.05  # relative difference from the largest world that counts as agreeing
MIN_REPLICATES = 2  # an interval needs two
# The default's least: with 2 a t-interval has one degree of freedom (t = 12.7), too wide to
# tell a size apart; with 4, t = 3.2.
DEFAULT_LEAST = 4
CONTENT = "scale"  # what manifest.json says the folder holds
CHANNEL_ORDER: tuple[str, ...] = (*CHANNELS, ALL)
# Every summary metric that is a share, a ratio (a declared denominator) or an index (Gini).
RATE_METRICS: tuple[str, ...] = tuple(
    name
    for name, m in METRICS.items()
    if m.timing == "summary" and (m.is_share or bool(m.denominator) or m.unit == "index")
)
HEADLINE: tuple[str, ...] = (
    "conversion",
    "visit_conversion",
    "return_rate",
    "reach_share",
    "repeat_purchase_rate",
    "profit_per_net_rmb",
)
TABLE_COLUMNS = ["size", "channel", "metric", "mean", "ci_low", "ci_high", "replicates"]
STABLE, DEPENDS, UNMEASURED = "stable", "depends on scale", "not measured"


class ScaleError(ParameterError):
    """A scale study cannot be run as asked; the message names the option and what is allowed."""


# ----------------------------------------------------------------------------------------------
# The plan: sizes, replicates, seeds, worlds
# ----------------------------------------------------------------------------------------------
def default_replicates(size: int) -> int:
    """Replicates for a world of ``size`` consumers: 16 up to 10,000 consumers, half as many
    for every tenfold size, at least 4 (10k: 16, 100k: 8, 1M: 4, 10M: 4).

    A rate's run-to-run spread shrinks about as one over the square root of the size, so the
    small worlds need the replicates; the largest world's runs cost the most anyway.

    Parameters
    ----------
    size
        Consumers in the world.

    Returns
    -------
    int
        The number of replicates.

    Examples
    --------
    >>> [default_replicates(n) for n in (2_000, 10_000, 100_000, 1_000_000, 10_000_000)]
    [16, 16, 8, 4, 4]
    >>> default_replicates(50_000_000)
    4
    """
    halvings = math.log10(max(size, 10_000) / 10_000)
    return max(DEFAULT_LEAST, min(16, round(16 / 2**halvings)))


def size_seeds(seed: int, size: int, n: int) -> list[int]:
    """The replicate seeds of one size: SeedSequence children of (``seed``, ``size``).

    Sizes draw independent seeds, so their replicates are independent samples; a size's seeds
    do not change when other sizes are added, and more replicates extend the fewer.

    Parameters
    ----------
    seed
        The study's base seed.
    size
        Consumers in the world.
    n
        Replicates.

    Returns
    -------
    list of int
        ``n`` seeds (:func:`sim.experiments.scenario.replicate_seeds` of the size's own seed).

    Examples
    --------
    >>> size_seeds(1, 10_000, 2) == size_seeds(1, 10_000, 3)[:2]
    True
    >>> size_seeds(1, 10_000, 2) == size_seeds(1, 100_000, 2)
    False
    """
    state = np.random.SeedSequence([seed, size]).generate_state(1, np.uint64)[0]
    return replicate_seeds(int(state >> np.uint64(1)), n)


def world(size: int, days: int = DAYS) -> Scenario:
    """The shipped defaults at ``size`` consumers for ``days`` days, owners in the default
    proportion (:func:`sim.experiments.calibration.smaller_world`); followers are a share of
    consumers already, and members follow the owners' groups.

    Parameters
    ----------
    size
        Consumers in the world.
    days
        Simulated days.

    Returns
    -------
    Scenario
        The scenario (named ``default``).

    Examples
    --------
    >>> world(10_000).params.owners.count, world(10_000_000).params.owners.count
    (50, 50000)
    """
    return default(smaller_world(size, days))


def check_plan(sizes: Sequence[int], replicates: Mapping[int, int] | None = None) -> dict[int, int]:
    """The sizes, in increasing order, with their replicates; bad input is a
    :class:`ScaleError` naming the option and what is allowed.

    Parameters
    ----------
    sizes
        World sizes in consumers: distinct, each in the range of ``world.consumers``.
    replicates
        Replicates per size (at least 2 each); sizes it leaves out get
        :func:`default_replicates`.

    Returns
    -------
    dict
        Size -> replicates, smallest size first.

    Examples
    --------
    >>> check_plan([100_000, 10_000])
    {10000: 16, 100000: 8}
    >>> check_plan([10_000], {10_000: 3})
    {10000: 3}
    """
    meta = field_of("world.consumers").metadata
    lo, hi = meta["lo"], meta["hi"]
    if not sizes:
        raise ScaleError("--sizes: give at least one world size (consumers)")
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not lo <= n <= hi:
            raise ScaleError(
                f"--sizes {n} is outside the allowed range [{lo}, {hi}] (consumers per world)"
            )
    if len(set(sizes)) != len(sizes):
        raise ScaleError(f"--sizes {sorted(sizes)} names a size twice: give each size once")
    extra = set(replicates or {}) - set(sizes)
    if extra:
        raise ScaleError(f"replicates given for sizes not studied: {sorted(extra)}")
    plan = {}
    for n in sorted(int(s) for s in sizes):
        r = (replicates or {}).get(n, default_replicates(n))
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < MIN_REPLICATES:
            raise ScaleError(
                f"--replicates {r} is outside the allowed range [{MIN_REPLICATES}, ...) "
                "(an interval needs two replicates)"
            )
        plan[n] = int(r)
    return plan


def scale_tasks(plan: Mapping[int, int], seed: int, days: int) -> list[dict[str, Any]]:
    """The runs of a study as :mod:`sim.experiments.engine` tasks, smallest size first: the
    summary table only, the rate metrics only, tagged with ``size`` and ``replicate``."""
    out = []
    for size, n in plan.items():
        params = world(size, days).params.to_dict()
        for r, s in enumerate(size_seeds(seed, size, n)):
            out.append(
                {
                    "params": params,
                    "seed": s,
                    "tags": {"size": size, "replicate": r},
                    "tables": ["summary"],
                    "metrics": list(RATE_METRICS),
                }
            )
    return out


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------
def scale_runs(
    sizes: Sequence[int] = SIZES,
    *,
    replicates: Mapping[int, int] | None = None,
    seed: int = SEED,
    days: int = DAYS,
    executor: Executor | None = None,
    workers: int | None = None,
    at_once: Mapping[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Every run of a scale study: one row per size, replicate, channel and rate metric.

    Parameters
    ----------
    sizes, replicates, seed, days
        As for :func:`scale_study`.
    executor
        Where runs go (local processes, a Dask cluster's executor); None: a pool of
        ``workers`` local processes made here (one worker: this process, one run after
        another).
    workers
        Local processes when there is no ``executor`` (default: all cores).
    at_once
        Size -> the most runs of that size in flight at once (sizes left out: no limit), so
        worlds too large to fit in memory side by side run a few at a time
        (:func:`sim.experiments.resources.check_memory` says how many fit).
    progress
        Called with (runs done, runs in all) after each run.

    Returns
    -------
    DataFrame
        Columns ``size, replicate, seed, channel, metric, value, run_s`` (``run_s``: the
        run's build and simulation seconds).
    """
    plan = check_plan(sizes, replicates)
    todo = scale_tasks(plan, seed, days)
    limits = dict(at_once or {})
    # Sizes without a limit run together; a limited size runs in chunks of its limit after.
    batches = [[t for t in todo if t["tags"]["size"] not in limits]]
    for size, limit in sorted(limits.items()):
        mine = [t for t in todo if t["tags"]["size"] == size]
        batches += [mine[i : i + max(1, limit)] for i in range(0, len(mine), max(1, limit))]
    batches = [b for b in batches if b]

    def run(pool: Executor | None) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for batch in batches:
            done = len(results)
            report = None if progress is None else _offset(progress, done, len(todo))
            results += run_all(batch, pool, report)
        return results

    if executor is not None:
        results = run(executor)
    else:
        with executor_for(min(workers or default_workers(), len(todo))) as (pool, _):
            results = run(pool)
    frames = []
    for r in results:
        t = r["timings"]
        frames.append(r["summary"].assign(run_s=t["build_s"] + t["simulate_s"]))
    runs = pd.concat(frames, ignore_index=True)
    order = {s: i for i, s in enumerate(plan)}
    runs = runs.sort_values(
        ["size", "replicate"], key=lambda c: c.map(order) if c.name == "size" else c, kind="stable"
    )
    return runs.reset_index(drop=True)


def _offset(progress: Callable[[int, int], None], done: int, total: int):
    return lambda d, _t: progress(done + d, total)


def summarise_scale(runs: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Mean and t-interval over replicates of every (size, channel, metric) of
    :func:`scale_runs`: the tidy table of :func:`scale_study`.

    ``replicates`` counts the runs that measured the rate (a rate with nothing to count, a
    return rate without deliveries, is NaN in that run); with fewer than two the interval is
    NaN.
    """
    rows = []
    for (size, ch, me), g in runs.groupby(["size", "channel", "metric"], sort=False):
        m, lo, hi = mean_ci(g["value"].to_numpy(), level)
        rows.append((int(size), ch, me, m, lo, hi, int(g["value"].notna().sum())))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return _ordered(table)


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by size, then channel in channel order, then metric in declaration order."""
    channel = {c: i for i, c in enumerate(CHANNEL_ORDER)}
    metric = {m: i for i, m in enumerate(RATE_METRICS)}
    keys = table.assign(
        _c=table.channel.map(channel).fillna(len(channel)),
        _m=table.metric.map(metric).fillna(len(metric)),
    )
    keys = keys.sort_values(["size", "_c", "_m"], kind="stable")
    return keys.drop(columns=["_c", "_m"]).reset_index(drop=True)


def scale_study(
    sizes: Sequence[int] = SIZES,
    *,
    replicates: Mapping[int, int] | None = None,
    seed: int = SEED,
    days: int = DAYS,
    executor: Executor | None = None,
    workers: int | None = None,
    at_once: Mapping[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Every rate metric of the shipped defaults per world size and channel, with intervals.

    Parameters
    ----------
    sizes
        World sizes in consumers (default 10,000, 100,000, 1,000,000 and 10,000,000); owners
        scale with them (:func:`world`).
    replicates
        Replicates per size (default :func:`default_replicates`: more at small sizes).
    seed
        Base seed; each size's replicate seeds derive from it and the size (:func:`size_seeds`).
    days
        Simulated days (default 120, the shipped defaults'; repeat purchase needs more than 90).
    executor, workers, at_once, progress
        Where and how the runs go (:func:`scale_runs`); the numbers do not depend on them.

    Returns
    -------
    DataFrame
        Columns ``size, channel, metric, mean, ci_low, ci_high, replicates``: the mean over
        replicates and its 95% t-interval, and how many replicates measured the rate; one row
        per size, channel (owners, streamer, conventional, all, where the rate is defined) and
        metric of :data:`RATE_METRICS`.

    See Also
    --------
    scale_dependence : does a rate depend on the size, and from which size is it stable?
    plot_scale : the figure.
    """
    runs = scale_runs(
        sizes,
        replicates=replicates,
        seed=seed,
        days=days,
        executor=executor,
        workers=workers,
        at_once=at_once,
        progress=progress,
    )
    return summarise_scale(runs)


# ----------------------------------------------------------------------------------------------
# Does a rate depend on scale?
# ----------------------------------------------------------------------------------------------
def _run_spread(half: float, n: int, level: float) -> float:
    """One run's standard deviation, from a t-interval's half-width over ``n`` replicates."""
    if n < 2 or not np.isfinite(half):
        return float("nan")
    return float(half * np.sqrt(n) / stats.t.ppf(0.5 + level / 2, n - 1))


def scale_dependence(
    table: pd.DataFrame, tolerance: float = TOLERANCE, level: float = LEVEL
) -> pd.DataFrame:
    """Each size of each (channel, metric) against the largest size.

    A size *agrees* with the largest when its mean lies within ``tolerance`` (relative) of the
    largest size's mean, or when its own interval contains that mean. A rate is ``stable``
    when every size agrees; otherwise it ``depends on scale``, and ``stable_from`` is the
    smallest size from which every larger size agrees (the largest size itself when none
    does: a larger world may still move it). A rate the largest size did not measure is
    ``not measured``.

    Parameters
    ----------
    table
        The table of :func:`scale_study` (``size, channel, metric, mean, ci_low, ci_high,
        replicates``).
    tolerance
        Relative difference that counts as agreeing (default 5%).
    level
        The intervals' confidence level (to read one run's spread from them).

    Returns
    -------
    DataFrame
        One row per channel, metric and size: ``mean, ci_low, ci_high, replicates``, the
        ``reference`` (the largest size's mean), ``rel_diff`` ((mean - reference) /
        |reference|), ``overlap`` (do the two intervals overlap?), ``within_interval`` (does
        the size's interval contain the reference?), ``agrees``, ``inconclusive`` (it agrees
        only because its interval is wide: more than ``tolerance`` away, yet inside; more
        replicates would tell), ``run_spread`` (one run's standard deviation relative to the
        reference: the noise a single run at that size carries), and per (channel, metric)
        the ``verdict`` and ``stable_from``.

    Examples
    --------
    >>> t = pd.DataFrame({
    ...     "size": [10, 100, 1000] * 2, "channel": ["all"] * 6,
    ...     "metric": ["a"] * 3 + ["b"] * 3,
    ...     "mean": [0.10, 0.101, 0.10, 0.05, 0.099, 0.10],
    ...     "ci_low": [0.099, 0.1, 0.099, 0.049, 0.098, 0.099],
    ...     "ci_high": [0.101, 0.102, 0.101, 0.051, 0.1, 0.101], "replicates": [4] * 6})
    >>> v = verdicts(scale_dependence(t))
    >>> [(r.metric, r.verdict, int(r.stable_from)) for r in v.itertuples()]
    [('a', 'stable', 10), ('b', 'depends on scale', 100)]
    """
    columns = [
        "channel",
        "metric",
        "size",
        "mean",
        "ci_low",
        "ci_high",
        "replicates",
        "reference",
        "rel_diff",
        "overlap",
        "within_interval",
        "agrees",
        "inconclusive",
        "run_spread",
        "verdict",
        "stable_from",
    ]
    rows: list[dict[str, Any]] = []
    for (ch, me), g in table.groupby(["channel", "metric"], sort=False):
        g = g.sort_values("size")
        ref = g.iloc[-1]
        ref_mean = float(ref["mean"])
        measured = bool(np.isfinite(ref_mean))
        mine = []
        for r in g.itertuples(index=False):
            mean, lo, hi = float(r.mean), float(r.ci_low), float(r.ci_high)
            diff = mean - ref_mean
            if ref_mean != 0:
                rel = diff / abs(ref_mean)
            else:
                rel = 0.0 if diff == 0 else (float("inf") if np.isfinite(diff) else float("nan"))
            overlap = bool(lo <= float(ref["ci_high"]) and float(ref["ci_low"]) <= hi)
            within = bool(lo <= ref_mean <= hi)
            close = bool(abs(rel) <= tolerance)
            agrees = measured and (close or within)
            spread = _run_spread((hi - lo) / 2, int(r.replicates), level)
            mine.append(
                {
                    "channel": ch,
                    "metric": me,
                    "size": int(r.size),
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "replicates": int(r.replicates),
                    "reference": ref_mean,
                    "rel_diff": rel,
                    "overlap": overlap,
                    "within_interval": within,
                    "agrees": agrees,
                    "inconclusive": agrees and not close,
                    "run_spread": spread / abs(ref_mean) if measured and ref_mean else np.nan,
                }
            )
        if measured:
            first = len(mine) - 1
            while first > 0 and mine[first - 1]["agrees"]:
                first -= 1
            verdict = STABLE if first == 0 else DEPENDS
            stable_from: float = mine[first]["size"]
        else:
            verdict, stable_from = UNMEASURED, float("nan")
        for row in mine:
            row.update(verdict=verdict, stable_from=stable_from)
        rows += mine
    out = pd.DataFrame(rows, columns=columns)
    if out.empty:
        return out
    out["stable_from"] = out["stable_from"].astype("Int64" if out.stable_from.isna().any() else int)
    channel = {c: i for i, c in enumerate(CHANNEL_ORDER)}
    metric = {m: i for i, m in enumerate(RATE_METRICS)}
    out = out.assign(
        _m=out.metric.map(metric).fillna(len(metric)), _c=out.channel.map(channel).fillna(9)
    )
    return (
        out.sort_values(["_m", "_c", "size"], kind="stable")
        .drop(columns=["_m", "_c"])
        .reset_index(drop=True)
    )


def verdicts(dependence: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, channel) of :func:`scale_dependence`: ``verdict``,
    ``stable_from``, the reference value, the relative difference at the smallest size and
    ``inconclusive_at``, the sizes that agree only within a wide interval (comma-separated).

    Examples
    --------
    >>> t = pd.DataFrame({"size": [10, 100], "channel": "all", "metric": "a",
    ...     "mean": [0.2, 0.1], "ci_low": [0.0, 0.09], "ci_high": [0.4, 0.11], "replicates": 4})
    >>> v = verdicts(scale_dependence(t)).iloc[0]
    >>> v.verdict, int(v.stable_from), v.inconclusive_at
    ('stable', 10, '10')
    """
    g = dependence.groupby(["metric", "channel"], sort=False)
    wide = {
        key: ",".join(str(int(n)) for n in sizes)
        for key, sizes in dependence[dependence.inconclusive].groupby(
            ["metric", "channel"], sort=False
        )["size"]
    }
    out = pd.DataFrame(
        {
            "verdict": g["verdict"].first(),
            "stable_from": g["stable_from"].first(),
            "reference": g["reference"].first(),
            "smallest_rel_diff": g["rel_diff"].first(),
        }
    )
    out["inconclusive_at"] = [wide.get(key, "") for key in out.index]
    return out.reset_index()


def format_verdicts(dependence: pd.DataFrame, metrics: Sequence[str] = HEADLINE) -> str:
    """The verdicts of ``metrics`` as a plain-text table (what ``fishschool scale`` prints)."""
    v = verdicts(dependence)
    v = v[v.metric.isin(list(metrics))]
    start = ["-" if pd.isna(x) else size_label(int(x)) for x in v.stable_from]
    shown = v.assign(stable_from=start)[["metric", "channel", "verdict", "stable_from"]]
    return shown.rename(columns={"stable_from": "stable from"}).to_string(index=False)


# ----------------------------------------------------------------------------------------------
# Figure and report
# ----------------------------------------------------------------------------------------------
def size_label(n: int) -> str:
    """A world size for an axis or a table: 10k, 2.5M.

    >>> [size_label(n) for n in (2_000, 10_000, 250_000, 1_000_000, 10_000_000, 2_500_000)]
    ['2k', '10k', '250k', '1M', '10M', '2.5M']
    """
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div:
            return f"{n / div:g}{unit}"
    return str(n)


def _unit(metric: str) -> tuple[float, str]:
    """Scale factor and axis label of a metric: shares in percent."""
    m = METRICS[metric]
    if m.is_share:
        return 100.0, "%"
    return 1.0, m.unit


def plot_scale(
    table: pd.DataFrame,
    path: str | Path | None = None,
    metrics: Sequence[str] = HEADLINE,
    tolerance: float = TOLERANCE,
) -> Figure:
    """Small multiples: one panel per metric, consumers on a log axis, one line per channel
    with its 95% intervals; a hollow marker is a size that disagrees with the largest
    (:func:`scale_dependence`).

    Parameters
    ----------
    table
        The table of :func:`scale_study`.
    path
        Where to save the figure (PNG, written atomically); None: not saved.
    metrics
        The panels (default :data:`HEADLINE`).
    tolerance
        As for :func:`scale_dependence`.

    Returns
    -------
    Figure
        The figure (close it with ``matplotlib.pyplot.close``).
    """
    dep = scale_dependence(table, tolerance)
    agrees = dep.set_index(["channel", "metric", "size"])["agrees"]
    sizes = sorted(table["size"].unique())
    channels = [c for c in CHANNEL_ORDER if c in set(table.channel)]
    cols = min(3, max(1, len(metrics)))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.5 * rows + 0.9), squeeze=False)
    span = math.log10(max(sizes) / min(sizes)) if len(sizes) > 1 else 1.0
    for ax, metric in zip(axes.flat, metrics, strict=False):
        factor, unit = _unit(metric)
        sub = table[table.metric == metric]
        drawn = False
        for i, ch in enumerate(channels):
            c = sub[(sub.channel == ch) & sub["mean"].notna()].sort_values("size")
            if c.empty:
                continue
            drawn = True
            dodge = 10 ** ((i - (len(channels) - 1) / 2) * 0.012 * span)  # apart on a log axis
            x = c["size"].to_numpy(dtype=float) * dodge
            y = factor * c["mean"].to_numpy()
            err = factor * np.vstack(
                [(c["mean"] - c["ci_low"]).to_numpy(), (c["ci_high"] - c["mean"]).to_numpy()]
            )
            colour = CHANNEL_COLOURS[ch]
            ax.errorbar(
                x, y, yerr=np.nan_to_num(err), color=colour, lw=1.6, capsize=3, elinewidth=1
            )
            ok = np.array([bool(agrees.get((ch, metric, int(s)), True)) for s in c["size"]])
            ax.plot(x[ok], y[ok], "o", color=colour, ms=5)
            ax.plot(x[~ok], y[~ok], "o", color=colour, mfc="white", mew=1.5, ms=6)
        ax.set_title(metric.replace("_", " ").replace("rmb", "RMB"), fontsize=10)
        ax.tick_params(labelsize=8)
        if not drawn:
            reason = "not measured"
            if metric == "repeat_purchase_rate":
                reason += "\n(needs runs longer than 90 days)"
            ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.set_xscale("log")
        ax.set_xticks(sizes, [size_label(int(s)) for s in sizes])
        ax.minorticks_off()
        ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
        ax.set_ylabel(unit, fontsize=8)
        if unit == "%":  # a few replicates' t-interval can pass 0% or 100%: keep the means in view
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0.0), min(high, 100.0))
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("consumers (owners, followers and members scaled alike)", fontsize=8)
    handles: list[Any] = [
        Line2D([], [], color=CHANNEL_COLOURS[c], marker="o", lw=1.6, label=c) for c in channels
    ]
    handles.append(
        Line2D(
            [], [], color="grey", marker="o", mfc="white", lw=0, label="differs from the largest"
        )
    )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    reps = table.groupby("size")["replicates"].max()
    fig.suptitle(
        "Rates by world size: mean and 95% interval over replicates ("
        + ", ".join(f"{size_label(int(s))}: {int(n)}" for s, n in reps.items())
        + f"); hollow: more than {tolerance:.0%} and its interval away from the largest world",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    if path is not None:
        atomic.write_file(Path(path), lambda fh: fig.savefig(fh, format="png"))
    return fig


def _cell(metric: str, mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "-"
    factor, unit = _unit(metric)
    fmt = (lambda v: f"{factor * v:.2f}") if unit == "%" else (lambda v: f"{v:.3g}")
    suffix = "%" if unit == "%" else ""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{fmt(mean)}{suffix}"
    return f"{fmt(mean)}{suffix} [{fmt(lo)}, {fmt(hi)}]"


def scale_report(
    table: pd.DataFrame,
    dependence: pd.DataFrame,
    *,
    days: int,
    seed: int,
    tolerance: float = TOLERANCE,
) -> str:
    """``scale.md``: the headline rates per size with intervals, and the verdicts."""
    sizes = sorted(int(s) for s in table["size"].unique())
    reps = table.groupby("size")["replicates"].max()
    channels = [c for c in CHANNEL_ORDER if c in set(table.channel)]
    lines = [
        f"# Scale study: the shipped defaults from {sizes[0]:,} to {sizes[-1]:,} consumers",
        "",
        f"The model's defaults at each size for {days} days, owners in the default proportion "
        f"(one per 200 consumers: {world(sizes[0], days).params.owners.count:,} at "
        f"{sizes[0]:,}, {world(sizes[-1], days).params.owners.count:,} at {sizes[-1]:,}), the "
        "streamer's followers a share of the consumers and members per group unchanged. Each "
        "size runs its own replicates on its own seeds (base seed "
        f"{seed}; replicates: "
        + ", ".join(f"{n:,}: {int(reps[n])}" for n in sizes)
        + "); values are means over replicates with a 95% t-interval.",
        "",
        "![Rates by world size](scale.png)",
        "",
        "## Headline rates",
        "",
    ]
    for metric in HEADLINE:
        sub = table[table.metric == metric].set_index(["size", "channel"])
        if sub.empty:
            continue
        shown = [c for c in channels if (sizes[0], c) in sub.index or (sizes[-1], c) in sub.index]
        lines += [
            f"**{metric}** ({METRICS[metric].meaning})",
            "",
            "| consumers | " + " | ".join(shown) + " |",
            "|---" * (len(shown) + 1) + "|",
        ]
        for n in sizes:
            cells = []
            for c in shown:
                if (n, c) in sub.index:
                    r = sub.loc[(n, c)]
                    cells.append(_cell(metric, r["mean"], r["ci_low"], r["ci_high"]))
                else:
                    cells.append("-")
            lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
        lines.append("")
    v = verdicts(dependence)
    lines += [
        "## Does a rate depend on scale?",
        "",
        f"Each size against the largest ({sizes[-1]:,} consumers): it agrees when its mean is "
        f"within {tolerance:.0%} of the largest world's or its interval contains that mean. A "
        "rate is stable when every size agrees; otherwise it depends on scale, and *stable "
        "from* is the smallest size from which every larger size agrees (the largest size "
        "itself: no smaller world agrees, and a larger one may still move it). Cells: the "
        "relative difference from the largest world (**bold**: disagrees; ?: agrees only "
        f"because its interval is wide, more than {tolerance:.0%} either side: more replicates "
        "would tell); then the largest world's value. `dependence.csv` has every comparison, "
        "with whether the intervals overlap and one run's spread at each size.",
        "",
    ]
    counts = v.verdict.value_counts()
    lines += [
        ", ".join(f"{int(counts.get(k, 0))} {k}" for k in (STABLE, DEPENDS, UNMEASURED))
        + f" (of {len(v)} rates by channel).",
        "",
        "| metric | channel | "
        + " | ".join(size_label(n) for n in sizes[:-1])
        + f" | {size_label(sizes[-1])} (value) | verdict | stable from |",
        "|---" * (len(sizes) + 4) + "|",
    ]
    dep = dependence.set_index(["metric", "channel", "size"])
    ranked = v.assign(_k=v.verdict.map({DEPENDS: 0, STABLE: 1, UNMEASURED: 2}))
    for r in ranked.sort_values("_k", kind="stable").itertuples(index=False):
        cells = []
        for n in sizes[:-1]:
            if (r.metric, r.channel, n) not in dep.index:
                cells.append("-")
                continue
            d = dep.loc[(r.metric, r.channel, n)]
            if not np.isfinite(d["rel_diff"]):
                cells.append("-")
                continue
            text = f"{d['rel_diff']:+.1%}" + ("?" if d["inconclusive"] else "")
            cells.append(text if d["agrees"] else f"**{text}**")
        last = dep.loc[(r.metric, r.channel, sizes[-1])]
        ref = _cell(r.metric, last["mean"], np.nan, np.nan)
        start = "-" if pd.isna(r.stable_from) else f"{int(r.stable_from):,}"
        lines.append(
            f"| {r.metric} | {r.channel} | "
            + " | ".join(cells)
            + f" | {ref} | {r.verdict} | {start} |"
        )
    lines.append("")
    return "\n".join(lines)


def scale_manifest(
    plan: Mapping[int, int],
    *,
    seed: int,
    days: int,
    command: list[str] | None,
    started: str | None,
    timings: Mapping[str, Any],
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """What a scale folder records about how it was made (the conventions of
    :func:`sim.experiments.output.experiment_manifest`)."""
    from sim.experiments.output import TOOL, scenario_record
    from sim.experiments.provenance import provenance

    return {
        "tool": TOOL,
        "content": CONTENT,
        **provenance(command, started),
        "seed": seed,
        "days": days,
        "sizes": list(plan),
        "replicates": {str(n): r for n, r in plan.items()},
        "seeds": {str(n): size_seeds(seed, n, r) for n, r in plan.items()},
        "level": LEVEL,
        "tolerance": tolerance,
        "metrics": list(RATE_METRICS),
        "worlds": {str(n): scenario_record(world(n, days)) for n in plan},
        "timings": dict(timings),
    }


def write_scale(
    out: str | Path,
    table: pd.DataFrame,
    dependence: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    plan: Mapping[int, int],
    seed: int,
    days: int,
    command: list[str] | None = None,
    started: str | None = None,
    timings: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write a scale study's folder atomically (it appears complete or not at all).

    Parameters
    ----------
    out
        The folder; an existing one is replaced only with ``force`` (and only one this tool
        wrote: :func:`sim.experiments.output.check_destination`).
    table, dependence, runs
        :func:`scale_study`'s table, :func:`scale_dependence` of it and :func:`scale_runs`
        (optional: ``runs.csv``).
    plan, seed, days, command, started, timings
        For ``manifest.json``: size -> replicates, the base seed, the days, the command line,
        when it started, and timings.
    force
        Replace an existing folder.

    Returns
    -------
    Path
        ``out``.
    """
    from sim.experiments.output import atomic_folder

    out = Path(out)
    with atomic_folder(out, force=force, content=CONTENT) as tmp:
        atomic.write_text(tmp / "scale.csv", table.to_csv(index=False), sync_dir=False)
        atomic.write_text(tmp / "dependence.csv", dependence.to_csv(index=False), sync_dir=False)
        if runs is not None:
            atomic.write_text(tmp / "runs.csv", runs.to_csv(index=False), sync_dir=False)
        fig = plot_scale(table, tmp / "scale.png")
        plt.close(fig)
        report = scale_report(table, dependence, days=days, seed=seed)
        atomic.write_text(tmp / "scale.md", report, sync_dir=False)
        manifest = scale_manifest(
            plan, seed=seed, days=days, command=command, started=started, timings=timings or {}
        )
        text = json.dumps(manifest, indent=2, default=str)
        atomic.write_text(tmp / "manifest.json", text, sync_dir=False)
    return out


def run_seconds(runs: pd.DataFrame) -> dict[str, float]:
    """Mean seconds a run took (build and simulation) per size, from :func:`scale_runs`."""
    per_run = runs.drop_duplicates(["size", "replicate"])
    return {str(int(k)): float(v) for k, v in per_run.groupby("size")["run_s"].mean().items()}
