"""Whom to make the first owners: the recruitment rules compared (``fishschool recruit``).

The lever ``owners.recruitment`` (ODD 5.5, :mod:`sim.world.recruitment`) chooses which
consumers the platform makes its first owners: ``random``, ``degree`` (the best connected),
``communities`` (spread over the graph's regions) or ``celf`` (greedy influence maximisation on
the word-of-mouth cascade). This study runs every rule on the same world and the same budget
of owners (``owners.count``), each with and without an owner churn wave
(``events.churn_wave_day``, ``events.churn_wave_share``), on the same replicate seeds: replicate
r of every rule and arm draws the same graph, consumers and followers, and the two arms of a
rule are the same run up to the wave's day (common random numbers). Differences between
rules, and each rule's loss to the wave, are therefore paired replicate by replicate.

Per rule it reports, with 95% t-intervals over replicates (:data:`MEASURES`):

* ``reach_share``: the share of consumers the owners' channel reached (without the wave);
* ``orders_per_owner``: the owners' channel's orders per owner recruited at the start (the
  budget; the orders of owners later recruited from members count too: they follow from
  whom the rule chose);
* ``earnings_gini``: the Gini coefficient of the recruited owners' earnings
  (:func:`earnings_gini`: the first ``owners.count`` rows of the owner table, with
  :func:`sim.world.metrics.gini`), and ``earnings_gini_all`` over every owner, as the model's
  metric ``owner_earnings_gini`` has it (owners recruited late earn little, which raises it);
* ``net_gmv_loss``: the share of the owners' net GMV from the wave's day to the end that the
  wave costs (:func:`churn_losses`), and ``reach_loss``: the owners' reach share at the end
  without the wave minus with it (points of share).

and each rule minus the first rule (``random`` by default), replicate by replicate.

The runs are an experiment (:func:`sim.experiments.experiment.run_experiment`: the run engine,
in this process, on local processes or on a Dask cluster, the same numbers everywhere).
:func:`write_study` writes the folder atomically: ``recruitment.csv`` (the table),
``runs.csv`` (every run's values), ``daily.csv`` (the owners' daily net GMV and reach, mean
over replicates), ``recruitment.png`` (:func:`plot_recruitment`), ``recruitment.md`` and
``manifest.json`` (seed and seeds, the world's scenario and parameters, versions, timings).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.stats import paired_differences, scenario_means
from sim.experiments import atomic
from sim.experiments.calibration import smaller_world
from sim.experiments.experiment import run_experiment
from sim.experiments.provenance import now
from sim.experiments.scenario import Scenario, default, replicate_seeds
from sim.world.metrics import gini
from sim.world.params import ParameterError
from sim.world.recruitment import RULES

CONSUMERS = 10_000  # the calibration's world (sim.experiments.calibration.calibration_world)
DAYS = 120
SEED = 1  # as the shipped scenarios
REPLICATES = 16  # as the scale study at 10,000 consumers
WAVE_DAY = 30  # as scenarios/owner_churn.toml
LEVEL = 0.95
CONTENT = "recruitment"  # what manifest.json says the folder holds
WAVE_SUFFIX = "-wave"  # a rule's run with the churn wave is scenario RULE-wave

# What the study reports per rule: name -> (label, unit, which way is better, meaning).
MEASURES: dict[str, tuple[str, str, str, str]] = {
    "reach_share": (
        "reach share",
        "share",
        "higher",
        "share of consumers who saw a product through an owner (end of run, no wave)",
    ),
    "orders_per_owner": (
        "orders per owner",
        "orders",
        "higher",
        "orders through owners (recruits by members included) per owner of the budget",
    ),
    "earnings_gini": (
        "earnings Gini, first owners",
        "index",
        "lower",
        "Gini coefficient of the earnings of the owners the rule chose (no wave)",
    ),
    "earnings_gini_all": (
        "earnings Gini, all owners",
        "index",
        "lower",
        "the same over every owner, recruits by members included (owner_earnings_gini)",
    ),
    "net_gmv": ("owners' net GMV", "RMB", "higher", "owners' GMV net of returns (no wave)"),
    "active_owners": (
        "active owners at the end",
        "owners",
        "higher",
        "owners active on the last day, recruits included (no wave)",
    ),
    "members_start": (
        "members per first owner",
        "members",
        "neither",
        "members in the first owners' groups at the start, per owner (group sizes are drawn "
        "whoever the owner is: ODD 5.5)",
    ),
    "owner_degree": (
        "friends per first owner",
        "friends",
        "neither",
        "mean number of friends (graph degree) of the owners the rule chose",
    ),
    "friend_overlap": (
        "friends shared by first owners",
        "share",
        "neither",
        "1 - distinct friends of the first owners / the sum of their friends: the share of "
        "their ties that lead to someone another first owner also knows",
    ),
    "net_gmv_loss": (
        "net GMV lost to the wave",
        "share",
        "lower",
        "share of the owners' net GMV from the wave's day to the end lost to the wave",
    ),
    "reach_loss": (
        "reach share lost to the wave",
        "share",
        "lower",
        "owners' reach share at the end without the wave minus with it",
    ),
}
HEADLINE = ("reach_share", "orders_per_owner", "earnings_gini", "net_gmv_loss", "reach_loss")
# What each run yields (runs.csv): per-run values, the losses are computed from two of them.
RUN_VALUES = (
    "reach_share",
    "orders_per_owner",
    "earnings_gini",
    "earnings_gini_all",
    "net_gmv",
    "active_owners",
    "net_gmv_after_wave_day",
    "members_start",
    "owner_degree",
    "friend_overlap",
)
TABLE_COLUMNS = [
    "rule",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "replicates",
    "baseline",
    "diff",
    "diff_low",
    "diff_high",
]
RULE_COLOURS = {
    "random": "#666666",
    "degree": "#1f78b4",
    "communities": "#33a02c",
    "celf": "#e31a1c",
}


class RecruitmentError(ParameterError):
    """A study that cannot be run as asked; the message names the option and what is allowed."""


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------
def study_world(
    consumers: int = CONSUMERS, days: int = DAYS, overrides: Sequence[str] = ()
) -> Scenario:
    """The calibration's world at ``consumers`` consumers for ``days`` days: the model's
    defaults, owners in the default proportion (:func:`sim.experiments.calibration.smaller_world`;
    50 at 10,000 consumers), then ``overrides`` (``--set`` items, applied last).

    >>> w = study_world()
    >>> w.params.world.consumers, w.params.owners.count, w.params.world.days
    (10000, 50, 120)
    """
    return default([*smaller_world(consumers, days), *overrides])


@dataclass(frozen=True)
class Plan:
    """A checked study: the world, the rules (the first is the baseline of the differences),
    replicates and base seed, and the wave (day and share of active owners)."""

    base: Scenario
    rules: tuple[str, ...]
    replicates: int
    seed: int
    wave_day: int
    wave_share: float

    @property
    def budget(self) -> int:
        """Owners recruited at the start, the same for every rule (``owners.count``)."""
        return int(self.base.params.owners.count)

    @property
    def runs(self) -> int:
        return 2 * len(self.rules) * self.replicates

    @property
    def seeds(self) -> list[int]:
        return replicate_seeds(self.seed, self.replicates)

    def arms(self) -> dict[str, tuple[str, bool]]:
        """Scenario name -> (rule, with the wave), rule by rule, without the wave first."""
        return {
            name: (rule, wave)
            for rule in self.rules
            for name, wave in ((rule, False), (rule + WAVE_SUFFIX, True))
        }

    def scenarios(self) -> list[Scenario]:
        """The world once per rule and arm: only ``owners.recruitment`` and the wave differ."""
        out = []
        for name, (rule, wave) in self.arms().items():
            changes = {
                "owners.recruitment": rule,
                "events.churn_wave_day": self.wave_day if wave else None,
                "events.churn_wave_share": self.wave_share,
            }
            shown = [f"{k}={'none' if v is None else v}" for k, v in changes.items()]
            out.append(
                dataclasses.replace(
                    self.base,
                    name=name,
                    params=self.base.params.with_overrides(changes),
                    overrides=(*self.base.overrides, *shown),
                )
            )
        return out


def plan_study(
    base: Scenario,
    *,
    rules: Sequence[str] = RULES,
    replicates: int = REPLICATES,
    seed: int = SEED,
    wave_day: int | None = None,
    wave_share: float | None = None,
) -> Plan:
    """Check a study before anything runs; bad input is a :class:`RecruitmentError` naming
    the option and what is allowed.

    Parameters
    ----------
    base
        The world (a scenario); its ``owners.recruitment`` and churn wave are replaced per arm.
    rules
        Two or more distinct rules of :data:`sim.world.recruitment.RULES`; the first is the
        baseline of the paired differences.
    replicates
        Replicate seeds shared by every rule and arm (at least 2: an interval needs two).
    seed
        Base seed of the replicate seeds.
    wave_day, wave_share
        The churn wave; default: the scenario's own wave if it has one, else day
        :data:`WAVE_DAY`, and the scenario's ``events.churn_wave_share`` (0.5 by default).

    Examples
    --------
    >>> p = plan_study(study_world(2000, 30), rules=["random", "celf"], replicates=2,
    ...                wave_day=10)
    >>> p.budget, p.runs, list(p.arms())
    (10, 8, ['random', 'random-wave', 'celf', 'celf-wave'])
    """
    rules = tuple(rules)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise RecruitmentError(
            f"--rules {' '.join(map(str, unknown))}: not a recruitment rule; allowed: "
            + ", ".join(RULES)
        )
    if len(rules) < 2 or len(set(rules)) != len(rules):
        raise RecruitmentError(
            f"--rules {' '.join(rules)}: give two or more distinct rules to compare (of "
            + ", ".join(RULES)
            + ")"
        )
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise RecruitmentError(
            f"--replicates {replicates} is outside the allowed range [2, ...) (an interval "
            "needs two replicates)"
        )
    p = base.params
    where = str(base.path) if base.path else "the study's world"
    if not p.channels.owners:
        raise RecruitmentError(
            f"{where}: channels.owners = false: without owners there is nobody to recruit"
        )
    if p.owners.count < 1:
        raise RecruitmentError(
            f"{where}: owners.count = {p.owners.count}: the budget must be at least one owner"
        )
    if p.graph.topology == "well_mixed" and set(rules) != {"random"}:
        raise RecruitmentError(
            f"{where}: graph.topology = 'well_mixed': the rules "
            + ", ".join(r for r in rules if r != "random")
            + " need a social graph (communities or edgelist)"
        )
    days = p.world.days
    given = f"--wave-day {wave_day}"
    if wave_day is None:
        own = p.events.churn_wave_day
        wave_day = own if own is not None else WAVE_DAY
        given = f"the churn wave's day {wave_day} ({'the default' if own is None else where}; "
        given += "--wave-day chooses another)"
    if isinstance(wave_day, bool) or not isinstance(wave_day, int) or not 0 <= wave_day < days:
        raise RecruitmentError(
            f"{given} is not within the simulated days (days 0 to {days - 1}; world.days = {days})"
        )
    share = p.events.churn_wave_share if wave_share is None else wave_share
    label = f"{where}: events.churn_wave_share =" if wave_share is None else "--wave-share"
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < share <= 1:
        raise RecruitmentError(
            f"{label} {share} is outside the allowed range (0, 1] (share of active owners "
            "quitting in the wave)"
        )
    return Plan(base, rules, int(replicates), int(seed), int(wave_day), float(share))


# ----------------------------------------------------------------------------------------------
# The measures, from an experiment's tables
# ----------------------------------------------------------------------------------------------
def earnings_gini(owners: pd.DataFrame, first: int | None = None) -> float:
    """Gini coefficient of owners' earnings (:func:`sim.world.metrics.gini`).

    Parameters
    ----------
    owners
        One run's owner table (``owner``, ``earnings``; :func:`sim.world.recorder.owner_table`).
    first
        Only owners ``0 .. first - 1``: those the run started with, chosen by the rule (owners
        recruited later from members come after them). None: every owner.

    Returns
    -------
    float
        The Gini coefficient; NaN when they earned nothing (nothing to share).

    Examples
    --------
    >>> t = pd.DataFrame({"owner": [0, 1, 2, 3], "earnings": [0.0, 0.0, 10.0, 5.0]})
    >>> earnings_gini(t, first=2), round(earnings_gini(t), 4)
    (nan, 0.5833)
    """
    rows = owners if first is None else owners[owners["owner"] < first]
    e = rows["earnings"].to_numpy(dtype=float)
    return gini(e) if e.size and e.sum() > 0 else float("nan")


def run_values(
    summary: pd.DataFrame,
    timeseries: pd.DataFrame,
    owners: pd.DataFrame,
    arms: Mapping[str, tuple[str, bool]],
    *,
    budget: int,
    wave_day: int,
    graphs: Mapping[int, Any] | None = None,
) -> pd.DataFrame:
    """Every run's values (:data:`RUN_VALUES`), from an experiment's tables.

    Parameters
    ----------
    summary, timeseries, owners
        The experiment's tables (columns ``scenario``, ``replicate``, ``seed`` first).
    arms
        Scenario name -> (rule, with the wave) (:meth:`Plan.arms`).
    budget
        Owners recruited at the start (``owners.count``).
    wave_day
        The wave's day; ``net_gmv_after_wave_day`` sums the owners' daily net GMV from it to
        the end (in both arms, so the two can be compared).
    graphs
        Replicate -> its social graph (CSR; :func:`replicate_graph`), for ``owner_degree`` and
        ``friend_overlap`` (:func:`friend_overlap`); None (or a replicate left out, or a
        well-mixed world's None): NaN.

    Returns
    -------
    DataFrame
        Columns ``rule, wave, replicate, seed, metric, value``.
    """
    s = summary[summary.channel == "owners"].set_index(["scenario", "replicate", "metric"])
    ts = timeseries[(timeseries.channel == "owners") & (timeseries.day >= wave_day)]
    after = ts.groupby(["scenario", "replicate"])["net_gmv"].sum()
    own = owners.groupby(["scenario", "replicate"])
    rows = []
    for (name, rep), g in own:
        rule, wave = arms[name]
        seed = int(g["seed"].iloc[0])

        def get(metric: str, name: str = name, rep: int = rep) -> float:
            return float(s.loc[(name, rep, metric), "value"])

        graph = (graphs or {}).get(int(rep))
        chosen = g[g["owner"] < budget]
        first = chosen["consumer"].to_numpy()
        degree, overlap = friend_overlap(graph, first) if graph is not None else (np.nan,) * 2
        values = {
            "reach_share": get("reach_share"),
            "orders_per_owner": get("orders") / budget,
            "earnings_gini": earnings_gini(g, budget),
            "earnings_gini_all": earnings_gini(g),
            "net_gmv": get("net_gmv"),
            "active_owners": get("active_owners"),
            "net_gmv_after_wave_day": float(after.get((name, rep), 0.0)),
            "members_start": float(chosen["members_start"].sum()) / budget,
            "owner_degree": degree,
            "friend_overlap": overlap,
        }
        rows += [(rule, wave, int(rep), seed, m, v) for m, v in values.items()]
    out = pd.DataFrame(rows, columns=["rule", "wave", "replicate", "seed", "metric", "value"])
    order = {name: i for i, name in enumerate(arms)}
    key = out.rule + np.where(out.wave, WAVE_SUFFIX, "")
    out = out.assign(_k=key.map(order)).sort_values(["_k", "replicate"], kind="stable")
    return out.drop(columns="_k").reset_index(drop=True)


def friend_overlap(adj: Any, nodes: np.ndarray) -> tuple[float, float]:
    """The mean degree of ``nodes`` and the share of their ties that duplicate another's:
    ``1 - |union of their friends| / sum of their degrees`` (0: no two share a friend).

    >>> from sim.world.graph import from_edges
    >>> star = from_edges(np.array([0, 0, 1, 1]), np.array([2, 3, 2, 4]), 5)  # 0, 1 share 2
    >>> friend_overlap(star, np.array([0, 1]))
    (2.0, 0.25)
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    starts, ends = adj.indptr[nodes], adj.indptr[nodes + 1]
    total = int((ends - starts).sum())
    if total == 0:
        return 0.0, float("nan")
    friends = np.concatenate([adj.indices[a:b] for a, b in zip(starts, ends, strict=True)])
    return total / nodes.size, 1.0 - np.unique(friends).size / total


def replicate_graph(scenario: Scenario, seed: int) -> Any:
    """The social graph replicate ``seed`` of ``scenario`` runs on (CSR, None when well
    mixed): the model's own build, with the ``random`` rule (the graph is drawn before the
    owners, from a stream of its own, so every rule gets this one; a test checks it)."""
    from sim.world.model import CommerceModel

    p = scenario.params.with_overrides({"seed": seed, "owners.recruitment": "random"})
    return CommerceModel(p).graph


def churn_losses(runs: pd.DataFrame) -> pd.DataFrame:
    """What the wave costs each rule in each replicate, from paired runs (:func:`run_values`).

    ``net_gmv_loss`` = 1 - (owners' net GMV from the wave's day on, with the wave) / (the same
    without it): the share of that period's sales the wave costs (negative if the wave's run
    sold more; NaN when the run without it sold nothing then). ``reach_loss`` = reach share
    at the end without the wave minus with it.

    Returns
    -------
    DataFrame
        Columns ``rule, replicate, metric, value``.

    Examples
    --------
    >>> runs = pd.DataFrame({"rule": "degree", "wave": [False, True, False, True],
    ...     "replicate": 0, "seed": 1,
    ...     "metric": ["net_gmv_after_wave_day"] * 2 + ["reach_share"] * 2,
    ...     "value": [200.0, 150.0, 0.7, 0.6]})
    >>> churn_losses(runs).round(6).to_dict("list")["value"]
    [0.25, 0.1]
    """
    wide = runs.pivot_table(
        index=["rule", "replicate"], columns=["metric", "wave"], values="value", sort=False
    )
    base_gmv = wide[("net_gmv_after_wave_day", False)]
    gmv_loss = 1.0 - wide[("net_gmv_after_wave_day", True)] / base_gmv.where(base_gmv != 0)
    reach_loss = wide[("reach_share", False)] - wide[("reach_share", True)]
    frames = [
        gmv_loss.rename("value").reset_index().assign(metric="net_gmv_loss"),
        reach_loss.rename("value").reset_index().assign(metric="reach_loss"),
    ]
    out = pd.concat(frames, ignore_index=True)
    return out[["rule", "replicate", "metric", "value"]]


def replicate_values(runs: pd.DataFrame) -> pd.DataFrame:
    """One value per rule, replicate and measure of :data:`MEASURES`: the runs without the
    wave, and the wave's losses (:func:`churn_losses`). Columns ``rule, replicate, metric,
    value``."""
    plain = runs[~runs.wave.astype(bool) & runs.metric.isin(list(MEASURES))]
    out = pd.concat(
        [plain[["rule", "replicate", "metric", "value"]], churn_losses(runs)], ignore_index=True
    )
    rules = {r: i for i, r in enumerate(dict.fromkeys(runs.rule))}
    measures = {m: i for i, m in enumerate(MEASURES)}
    out = out.assign(_r=out.rule.map(rules), _m=out.metric.map(measures))
    out = out.sort_values(["_r", "_m", "replicate"], kind="stable")
    return out.drop(columns=["_r", "_m"]).reset_index(drop=True)


def summarise(values: pd.DataFrame, baseline: str | None = None, level: float = LEVEL):
    """Mean and t-interval of every (rule, measure) over replicates, and each rule minus
    ``baseline`` (default: the first rule) replicate by replicate, with the t-interval of the
    paired differences (NaN for the baseline itself): the statistics of
    :func:`analysis.stats.scenario_means` and :func:`analysis.stats.paired_differences`, a
    rule standing for a scenario. Columns :data:`TABLE_COLUMNS`."""
    runs = values.rename(columns={"rule": "scenario"}).assign(channel="owners")
    baseline = baseline or runs.scenario.iloc[0]
    means = scenario_means(runs, level).rename(
        columns={"lo": "ci_low", "hi": "ci_high", "n": "replicates"}
    )
    diffs = paired_differences(runs, baseline, level).rename(
        columns={"lo": "diff_low", "hi": "diff_high"}
    )
    table = means.merge(
        diffs[["scenario", "metric", "diff", "diff_low", "diff_high"]],
        on=["scenario", "metric"],
        how="left",
    )
    return table.rename(columns={"scenario": "rule"}).assign(baseline=baseline)[TABLE_COLUMNS]


def daily_means(timeseries: pd.DataFrame, arms: Mapping[str, tuple[str, bool]], consumers: int):
    """The owners' daily net GMV and reach share, mean over replicates, per rule, arm and day.
    Columns ``rule, wave, day, net_gmv, reach_share``."""
    ts = timeseries[timeseries.channel == "owners"]
    g = ts.groupby(["scenario", "day"], sort=False)[["net_gmv", "reach"]].mean().reset_index()
    g["rule"] = g.scenario.map(lambda s: arms[s][0])
    g["wave"] = g.scenario.map(lambda s: arms[s][1])
    g["reach_share"] = g.pop("reach") / consumers
    return g[["rule", "wave", "day", "net_gmv", "reach_share"]].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    """A study's plan and what it measured."""

    plan: Plan
    runs: pd.DataFrame  # run_values
    values: pd.DataFrame  # replicate_values
    table: pd.DataFrame  # summarise
    daily: pd.DataFrame  # daily_means
    timings: dict[str, Any] = field(default_factory=dict)


def recruitment_study(
    plan: Plan,
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Run every rule with and without the wave on the plan's replicate seeds, and measure.

    Parameters
    ----------
    plan
        The checked study (:func:`plan_study`).
    executor, workers
        Where the runs go (:func:`sim.experiments.experiment.run_experiment`: an executor, or
        ``workers`` local processes made there; one worker runs them in this process). The
        numbers do not depend on it.
    progress
        Called with (runs done, runs in all) after each run.

    Returns
    -------
    StudyResult
        Per-run values, per-replicate measures, the table with intervals and paired
        differences, the daily means and timings (seconds per run and rule).
    """
    started, t0 = now(), time.perf_counter()
    exp = run_experiment(
        plan.scenarios(),
        replicates=plan.replicates,
        seed=plan.seed,
        workers=workers,
        executor=executor,
        progress=progress,
    )
    arms = plan.arms()
    graphs = {r: replicate_graph(plan.base, s) for r, s in enumerate(plan.seeds)}
    runs = run_values(
        exp.summary,
        exp.timeseries,
        exp.owners,
        arms,
        budget=plan.budget,
        wave_day=plan.wave_day,
        graphs=graphs,
    )
    del graphs
    values = replicate_values(runs)
    run_s = np.asarray(exp.timings["run_s"], dtype=float).reshape(len(arms), plan.replicates)
    per_rule = {
        rule: float(run_s[[i for i, (r, _) in enumerate(arms.values()) if r == rule]].mean())
        for rule in plan.rules
    }
    return StudyResult(
        plan=plan,
        runs=runs,
        values=values,
        table=summarise(values),
        daily=daily_means(exp.timeseries, arms, plan.base.params.world.consumers),
        timings={
            "started": started,
            "wall_s": time.perf_counter() - t0,
            "runs": exp.timings["runs"],
            "workers": exp.timings["workers"],
            "run_s_mean": per_rule,
        },
    )


# ----------------------------------------------------------------------------------------------
# Figure, report, folder
# ----------------------------------------------------------------------------------------------
def _scale(metric: str) -> tuple[float, str]:
    """Factor and axis unit of a measure: shares in percent (points for a loss of share)."""
    unit = MEASURES[metric][1]
    if metric == "reach_loss":
        return 100.0, "points of share"
    if unit == "share":
        return 100.0, "%"
    return 1.0, unit


def plot_recruitment(result: StudyResult, path: str | Path | None = None) -> Figure:
    """Five panels, one per headline measure (:data:`HEADLINE`): each rule's replicates (dots)
    and mean with its 95% interval; and the owners' daily net GMV (7-day mean, mean over
    replicates) per rule without the wave (solid) and with it (dashed).

    Parameters
    ----------
    result
        The study (:func:`recruitment_study`).
    path
        Where to save the figure (PNG, written atomically); None: not saved.
    """
    plan, values, table = result.plan, result.values, result.table
    rules = list(plan.rules)
    fig, axes = plt.subplots(2, 3, figsize=(13.5, 7.6))
    rng = np.random.default_rng(0)  # the dots' jitter only
    for ax, metric in zip(axes.flat, HEADLINE, strict=False):
        factor, unit = _scale(metric)
        t = table[table.metric == metric].set_index("rule")
        for i, rule in enumerate(rules):
            colour = RULE_COLOURS.get(rule, "black")
            v = values[(values.rule == rule) & (values.metric == metric)]["value"].to_numpy()
            x = i + rng.uniform(-0.12, 0.12, v.size)
            ax.plot(x, factor * v, "o", color=colour, alpha=0.3, ms=3.5, mew=0)
            if rule in t.index and np.isfinite(t.loc[rule, "mean"]):
                r = t.loc[rule]
                lo, hi = r["ci_low"], r["ci_high"]
                err = None
                if np.isfinite(lo) and np.isfinite(hi):
                    err = [[factor * (r["mean"] - lo)], [factor * (hi - r["mean"])]]
                ax.errorbar(
                    [i + 0.28],
                    [factor * r["mean"]],
                    yerr=err,
                    fmt="s",
                    color=colour,
                    ms=6,
                    capsize=4,
                    lw=1.6,
                )
        if metric in ("net_gmv_loss", "reach_loss"):
            ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(rules)), rules)
        ax.set_xlim(-0.5, len(rules) - 0.3)
        label, _, better, _ = MEASURES[metric]
        ax.set_title(f"{label} ({better} is better)", fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    ax = axes.flat[len(HEADLINE)]
    daily = result.daily
    for rule in rules:
        colour = RULE_COLOURS.get(rule, "black")
        for wave, style in ((False, "-"), (True, "--")):
            d = daily[(daily.rule == rule) & (daily.wave == wave)].sort_values("day")
            smooth = d["net_gmv"].rolling(7, min_periods=1).mean()
            label = rule if not wave else None
            ax.plot(d["day"], smooth, style, color=colour, lw=1.4, label=label)
    ax.axvline(plan.wave_day, color="black", lw=0.8, ls=":")
    ax.set_title("owners' daily net GMV (solid: no wave, dashed: wave)", fontsize=10)
    ax.set_xlabel("day", fontsize=8)
    ax.set_ylabel("RMB a day (7-day mean)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, frameon=False)
    w = plan.base.params.world
    fig.suptitle(
        f"Recruitment rules on the same graph and budget ({plan.budget:,} owners, "
        f"{w.consumers:,} consumers, {w.days} days), {plan.replicates} replicates on common "
        f"random numbers\nwave: {plan.wave_share:.0%} of the active owners quit on day "
        f"{plan.wave_day}; dots: replicates; squares: mean and 95% interval",
        fontsize=9.5,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    if path is not None:
        atomic.write_file(Path(path), lambda fh: fig.savefig(fh, format="png"), sync_dir=False)
    return fig


def _fmt(metric: str, x: float, signed: bool = False) -> str:
    if not np.isfinite(x):
        return "-"
    factor, unit = _scale(metric)
    v = factor * x
    sign = "+" if signed else ""
    if unit in ("%", "points of share"):
        return f"{v:{sign}.1f}"
    if unit == "index":
        return f"{v:{sign}.3f}"
    if abs(v) >= 1000:
        return f"{v:{sign},.0f}"
    return f"{v:{sign}.1f}"


def cell(metric: str, mean: float, lo: float, hi: float, signed: bool = False) -> str:
    """``mean [low, high]`` in the measure's unit (shares in percent).

    >>> cell("reach_share", 0.7123, 0.70, 0.725)
    '71.2 [70.0, 72.5]'
    """
    text = _fmt(metric, mean, signed)
    if np.isfinite(lo) and np.isfinite(hi):
        text += f" [{_fmt(metric, lo, signed)}, {_fmt(metric, hi, signed)}]"
    return text


def format_table(result: StudyResult, metrics: Sequence[str] = HEADLINE) -> str:
    """The headline measures per rule, ``mean [95% interval]`` (what the command prints)."""
    t = result.table.set_index(["rule", "metric"])
    header = {m: f"{MEASURES[m][0]} ({_scale(m)[1]})" for m in metrics}
    rows = []
    for rule in result.plan.rules:
        cells = {}
        for m in metrics:
            r = t.loc[(rule, m)]
            cells[header[m]] = cell(m, r["mean"], r["ci_low"], r["ci_high"])
        rows.append(pd.Series(cells, name=rule))
    return pd.DataFrame(rows).to_string()


def study_report(result: StudyResult) -> str:
    """``recruitment.md``: set-up, the table, the paired differences, definitions, speed."""
    plan, table = result.plan, result.table
    w = plan.base.params.world
    base_rule = plan.rules[0]
    t = table.set_index(["rule", "metric"])
    world = (
        f"`{plan.base.path}`"
        if plan.base.path
        else "the model's defaults (the calibration's world)"
    )
    lines = [
        "# Recruitment rules: whom to make the first owners",
        "",
        f"**Set-up.** {world} at {w.consumers:,} consumers for {w.days} days, with a budget of "
        f"{plan.budget:,} owners chosen by each rule ({', '.join(plan.rules)}; ODD 5.5). "
        f"Every rule runs {plan.replicates} replicates on the same seeds (base seed "
        f"{plan.seed}): replicate r of every rule has the same graph, consumers and "
        "followers. Each rule runs twice per replicate, without and with an owner churn wave "
        f"({plan.wave_share:.0%} of the active owners, chosen at random, quit on day "
        f"{plan.wave_day}); the two runs are identical until the wave. Values are means over "
        "replicates with a 95% t-interval; differences are paired, replicate by replicate.",
        "",
        "![Recruitment rules](recruitment.png)",
        "",
        "## Per rule",
        "",
        "| rule | " + " | ".join(f"{MEASURES[m][0]} ({_scale(m)[1]})" for m in MEASURES) + " |",
        "|---" * (len(MEASURES) + 1) + "|",
    ]
    for rule in plan.rules:
        cells = [
            cell(m, *t.loc[(rule, m), ["mean", "ci_low", "ci_high"]])
            if (rule, m) in t.index
            else "-"
            for m in MEASURES
        ]
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Each rule minus {base_rule}, paired",
        "",
        "Mean of the per-replicate differences and its 95% interval; **bold**: the interval "
        "excludes zero.",
        "",
        "| rule | " + " | ".join(MEASURES[m][0] for m in MEASURES) + " |",
        "|---" * (len(MEASURES) + 1) + "|",
    ]
    for rule in plan.rules[1:]:
        cells = []
        for m in MEASURES:
            r = t.loc[(rule, m)]
            text = cell(m, r["diff"], r["diff_low"], r["diff_high"], signed=True)
            clear = np.isfinite(r["diff_low"]) and (r["diff_low"] > 0 or r["diff_high"] < 0)
            cells.append(f"**{text}**" if clear else text)
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines += ["", "## What the columns mean", ""]
    lines += [f"- **{MEASURES[m][0]}** ({_scale(m)[1]}): {MEASURES[m][3]}." for m in MEASURES]
    lines += [
        "",
        "## Reading it",
        "",
        "- The rules choose only the owners the run starts with; members recruited as owners "
        "later (ODD 7.11) come from whoever those owners reach, so every measure but the first "
        "owners' Gini includes the rule's indirect effect.",
        "- An owner's groups get their sizes whoever she is (ODD 5.5): a well-connected owner "
        "gets no more seats, she fills them from nearer. The owners' reach is mostly their "
        "members, so a rule moves it through whom the seats, the invitations and word of mouth "
        "reach, not through how many seats there are (*members per first owner*).",
        "- Common random numbers: a rule draws from a stream of its own, and the owners' "
        "stream moves on as under `random`, so the k-th first owner gets the same draws of "
        "group sizes, skill, knowledge and posting activity under every rule (*members per "
        "first owner* is the same for all); what differs is who she is, and so who fills her "
        "seats.",
        "- `celf` maximises the expected reach of a word-of-mouth cascade from the owners "
        "themselves (ODD 5.5), not the owners' channel as the model runs it (groups around each "
        "owner, posts opened by members); its owners are among the best connected, and share "
        "more friends than random owners do (*friends shared by first owners*).",
        "- The wave removes active owners at random whatever the rule; a rule is robust here "
        "when the owners left, and the members who take over the groups of those who quit "
        "(ODD 7.11), carry the sales.",
        "",
        "## Speed",
        "",
        f"{result.timings.get('runs', plan.runs)} runs in {result.timings.get('wall_s', 0):.1f} "
        f"s on {result.timings.get('workers', 1)} worker(s); seconds a run (build and "
        "simulation), by rule: "
        + ", ".join(f"{r} {s:.2f}" for r, s in result.timings.get("run_s_mean", {}).items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def study_manifest(result: StudyResult, command: list[str] | None = None) -> dict[str, Any]:
    """What a recruitment folder records about how it was made (the conventions of
    :func:`sim.experiments.output.experiment_manifest`)."""
    from sim.experiments.output import TOOL, scenario_record
    from sim.experiments.provenance import provenance

    plan = result.plan
    return {
        "tool": TOOL,
        "content": CONTENT,
        **provenance(command, result.timings.get("started")),
        "seed": plan.seed,
        "replicates": plan.replicates,
        "seeds": plan.seeds,
        "rules": list(plan.rules),
        "baseline": plan.rules[0],
        "budget": plan.budget,
        "wave": {"day": plan.wave_day, "share": plan.wave_share},
        "level": LEVEL,
        "world": scenario_record(plan.base),
        "arms": {s.name: list(s.overrides) for s in plan.scenarios()},
        "timings": dict(result.timings),
    }


def write_study(out: str | Path, result: StudyResult, command: list[str] | None = None) -> Path:
    """Write a study's folder atomically (it appears complete or not at all); an existing
    ``out`` is refused (:func:`sim.experiments.output.atomic_folder`)."""
    from sim.experiments.output import atomic_folder

    out = Path(out)
    with atomic_folder(out, content=CONTENT) as tmp:
        for name, df in (
            ("recruitment.csv", result.table),
            ("runs.csv", result.runs),
            ("daily.csv", result.daily),
        ):
            atomic.write_text(tmp / name, df.to_csv(index=False), sync_dir=False)
        fig = plot_recruitment(result, tmp / "recruitment.png")
        plt.close(fig)
        atomic.write_text(tmp / "recruitment.md", study_report(result), sync_dir=False)
        text = json.dumps(study_manifest(result, command), indent=2, default=str)
        atomic.write_text(tmp / "manifest.json", text, sync_dir=False)
    return out
