"""Explain a verdict: split a difference into mechanism groups with exact Shapley values.

Two questions, one method:

* **Scenario mode** (:func:`explain_scenarios`, ``fishschool explain A B``): why does a metric
  differ between scenarios A and B? The parameters that differ are sorted into the mechanism
  groups of :data:`MECHANISMS` (what is in no group forms the group ``other``, so nothing is
  lost). Every coalition S of these groups gives a hybrid world: B's values for the groups in
  S, A's for the rest. Each hybrid runs on the same replicate seeds (common random numbers),
  and a group's part is its Shapley value in the game v(S) = mean metric of hybrid S. The parts
  add up to v(B) - v(A) exactly (efficiency), because v(empty set) *is* A's run and v(all
  groups) *is* B's run, seed for seed.
* **Channel mode** (:func:`explain_channels`, ``fishschool explain S --channels owners
  streamer``): why does a metric differ between two channels within one scenario? Each group
  has counterfactual swaps (:data:`CHANNEL_SWAPS`) that give channel B what channel A has for
  that mechanism (the streamer the owners' hype, terms, trust, the platform's brand screening)
  or lift a limit B works under that A does not (her vetting team's capacity, the brands'
  desks' capacity). A group's part is its Shapley value in the game "how much of the gap A - B
  disappears when the swaps of coalition S are made". What the swaps cannot explain is
  reported as the part ``structure`` = total - sum of the parts: reach and format (who sees a
  product, how often, through what), and the owners' mechanisms no parameter can give the
  streamer (the owner's own first line of after-sales, her fit and advice).

Shapley values are exact (all 2^k coalitions, k <= :data:`MAX_PLAYERS`), so the decomposition
does not depend on an order in which mechanisms are switched, and interactions are shared
evenly between the groups involved.

References
----------
Shapley, L. S. (1953). A value for n-person games. In H. W. Kuhn and A. W. Tucker (eds.),
*Contributions to the Theory of Games II*, 307-317. Princeton University Press.

Lundberg, S. M. and Lee, S.-I. (2017). A unified approach to interpreting model predictions.
*Advances in Neural Information Processing Systems 30*.

Law, A. M. (2015). *Simulation Modeling and Analysis*, 5th ed., section 11.2 (common random
numbers). McGraw-Hill.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats import mean_ci
from sim.experiments.engine import run_all
from sim.experiments.provenance import now
from sim.experiments.scenario import Scenario, replicate_seeds
from sim.world.channels import ALL, CHANNELS
from sim.world.metrics import METRICS, SUMMARY_METRICS
from sim.world.params import SECTIONS, ParameterError, Params, check_value, field_of

# ----------------------------------------------------------------------------------------------
# Declarations
# ----------------------------------------------------------------------------------------------
MECHANISMS: dict[str, tuple[str, ...]] = {
    # Which brands reach the owners' catalogue.
    "selection": ("platform.selection_strictness", "platform.selection_noise"),
    # How carefully the streamer checks what she carries.
    "vetting": (
        "streamer.vetting_capacity",
        "streamer.vetting_threshold",
        "streamer.products_per_session",
    ),
    # How well what is offered fits who is offered it.
    "fit": (
        "owners.knowledge",
        "owners.learning_rate",
        "owners.listening",
        "owners.pick_sharpness",
        "owners.advice",
        "platform.live_2b_per_week",
        "platform.live_2b_skill_gain",
    ),
    # Excitement at the point of sale, and the expectation gap it leaves.
    "hype": (
        "hype.live",
        "hype.post",
        "hype.search",
        "hype.material",
        "purchase.hype_expectation",
        "word_of_mouth.hype_carryover",
    ),
    # Problems resolved before they become returns, and who has the capacity to resolve them.
    "after_sales": (
        "after_sales.resolution",
        "after_sales.owner_resolution",
        "after_sales.owner_capacity",
        "after_sales.platform_capacity",
        "after_sales.brand_capacity",
    ),
    # Who pays whom how much.
    "price_terms": (
        "owners.commission",
        "owners.discount",
        "streamer.commission",
        "streamer.discount",
        "streamer.slot_fee",
        "conventional.ad_cost",
        "conventional.discount",
        "brands.margin",
        "brands.margin_sigma",
        "brands.reverse_logistics",
        "brands.exchange_cost",
        "platform.take",
    ),
    # Whom consumers believe, and how fast that changes.
    "trust": (
        "consumers.trust_owner",
        "consumers.trust_streamer",
        "consumers.trust_friend",
        "consumers.trust_search",
        "feedback.trust_gain",
        "feedback.trust_loss",
    ),
}
"""Mechanism groups: group name -> the dotted parameter names (as in scenario files and
``--set``) that belong to it. A parameter belongs to at most one group."""

Swap = tuple[str, str | float]
CHANNEL_SWAPS: dict[tuple[str, str], dict[str, tuple[Swap, ...]]] = {
    ("owners", "streamer"): {
        "hype": (("hype.live", "hype.post"),),
        "price_terms": (
            ("streamer.discount", "owners.discount"),
            ("streamer.commission", "owners.commission"),
            ("streamer.slot_fee", 0.0),
        ),
        # Brands' desks with room for every problem: nothing queues. (The owner's own first
        # line has no parameter to give the streamer: it stays in "structure".)
        "after_sales": (("after_sales.brand_capacity", 1e9),),
        # She signs only brands the platform's selection admitted, as owners sell.
        "selection": (("streamer.screened", True),),
        # Her team checks every product it puts on air, as a platform-screened catalogue is.
        "vetting": (("streamer.vetting_capacity", 1e6),),
        "trust": (("consumers.trust_streamer", "consumers.trust_owner"),),
    },
}
"""Counterfactual swaps for channel mode: for a channel pair (A, B), per mechanism group, the
swaps that give channel B what channel A has: (target parameter, source), the source being a
parameter name (its value in the scenario is copied) or a literal value. A group without swaps
for the pair is not a player."""

OTHER = "other"
TOTAL = "total"
STRUCTURE = "structure"
DEFAULT_METRICS: tuple[str, ...] = ("return_rate", "conversion", "profit_per_order")
MAX_PLAYERS = 8
TABLE_COLUMNS = ["metric", "channel", "part", "value", "lo", "hi", "start", "end", "parameters"]
CHANNEL_CHOICES: tuple[str, ...] = (*CHANNELS, ALL)


class ExplainError(ParameterError):
    """An explanation cannot be made as asked; the message says why and what is allowed."""


# ----------------------------------------------------------------------------------------------
# Shapley values
# ----------------------------------------------------------------------------------------------
def coalitions(players: Sequence[str]) -> list[frozenset[str]]:
    """Every subset of ``players``, smallest first (2^k of them).

    Parameters
    ----------
    players
        The players, in a fixed order.

    Returns
    -------
    list of frozenset
        The empty coalition first, the grand coalition last.

    Examples
    --------
    >>> [sorted(c) for c in coalitions(["a", "b"])]
    [[], ['a'], ['b'], ['a', 'b']]
    """
    return [
        frozenset(c)
        for size in range(len(players) + 1)
        for c in itertools.combinations(players, size)
    ]


def shapley(
    players: Sequence[str],
    value: Mapping[frozenset[str], Any] | Callable[[frozenset[str]], Any],
) -> dict[str, Any]:
    """Exact Shapley values of a cooperative game.

    phi_i = sum over S not containing i of |S|! (k - |S| - 1)! / k! * (v(S + i) - v(S)).
    The values add up to v(all players) - v(no player) (efficiency); a player whose joining
    never changes the value gets 0 (null player); players who contribute the same to every
    coalition get the same value (symmetry).

    Parameters
    ----------
    players
        The players (k of them; every one of the 2^k coalitions is evaluated once).
    value
        The characteristic function v: a mapping or a function from a frozenset of players to a
        number or a numpy array (several games with the same players at once).

    Returns
    -------
    dict
        Player -> Shapley value (same type as the values of ``value``).

    References
    ----------
    Shapley, L. S. (1953). A value for n-person games. *Contributions to the Theory of Games
    II*, 307-317.

    Examples
    --------
    The glove game: ``a`` and ``b`` hold a left glove each, ``c`` the right one; a pair is
    worth 1.

    >>> glove = lambda s: float("c" in s and bool(s & {"a", "b"}))
    >>> {p: round(v, 4) for p, v in shapley(["a", "b", "c"], glove).items()}
    {'a': 0.1667, 'b': 0.1667, 'c': 0.6667}
    """
    players = list(players)
    if len(set(players)) != len(players):
        raise ValueError(f"players must differ: {players}")
    k = len(players)
    v = value if callable(value) else value.__getitem__
    worth = {s: v(s) for s in coalitions(players)}
    weight = [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
    out: dict[str, Any] = {}
    for p in players:
        others = [q for q in players if q != p]
        total: Any = 0.0
        for s in coalitions(others):
            total = total + weight[len(s)] * (worth[s | {p}] - worth[s])
        out[p] = total
    return out


# ----------------------------------------------------------------------------------------------
# Parameters and groups
# ----------------------------------------------------------------------------------------------
def parameter_names() -> list[str]:
    """Every dotted parameter name of :class:`sim.world.params.Params` except the seed.

    Examples
    --------
    >>> "platform.selection_strictness" in parameter_names()
    True
    """
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def check_declarations() -> list[str]:
    """Problems with :data:`MECHANISMS` and :data:`CHANNEL_SWAPS` (empty when all is well).

    Every name must be a real parameter, no parameter may sit in two groups, a swap's pair must
    name two channels, its groups must be declared and its literal values allowed.

    Returns
    -------
    list of str
        One line per problem.

    Examples
    --------
    >>> check_declarations()
    []
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    for group, names in MECHANISMS.items():
        if group in (OTHER, TOTAL, STRUCTURE):
            problems.append(f"MECHANISMS: '{group}' is a reserved part name")
        for name in names:
            try:
                field_of(name)
            except ParameterError as err:
                problems.append(f"MECHANISMS[{group!r}]: {err}")
            if name in seen:
                problems.append(f"{name} is in groups {seen[name]!r} and {group!r}")
            seen.setdefault(name, group)
    for pair, groups in CHANNEL_SWAPS.items():
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(CHANNELS):
            problems.append(f"CHANNEL_SWAPS: {pair} is not a pair of channels {CHANNELS}")
        for group, swaps in groups.items():
            if group not in MECHANISMS:
                problems.append(f"CHANNEL_SWAPS[{pair}]: unknown group {group!r}")
            for target, source in swaps:
                try:
                    field_of(target)
                    if isinstance(source, str):
                        field_of(source)
                    else:
                        check_value(target, source)
                except ParameterError as err:
                    problems.append(f"CHANNEL_SWAPS[{pair}][{group!r}]: {err}")
    return problems


def field_name(name: str) -> str:
    """``name`` if it is a parameter; else a ParameterError saying so (with a suggestion).

    Examples
    --------
    >>> field_name("owners.commission")
    'owners.commission'
    """
    field_of(name)
    return name


def group_of(name: str) -> str:
    """The mechanism group of a parameter, or ``"other"``.

    Examples
    --------
    >>> group_of("platform.selection_strictness"), group_of("channels.owners")
    ('selection', 'other')
    """
    for group, names in MECHANISMS.items():
        if name in names:
            return group
    return OTHER


def flat_params(params: Params) -> dict[str, Any]:
    """The parameters as dotted name -> value, without the seed.

    Examples
    --------
    >>> flat_params(Params())["owners.commission"]
    0.15
    """
    out: dict[str, Any] = {}
    for section, values in params.to_dict().items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
    return out


def parameter_diffs(a: Params, b: Params) -> dict[str, dict[str, tuple[Any, Any]]]:
    """The parameters that differ between two parameter sets, by mechanism group.

    Parameters
    ----------
    a, b
        The two parameter sets (seeds are ignored).

    Returns
    -------
    dict
        Group -> {parameter: (value in a, value in b)}; groups in the order of
        :data:`MECHANISMS`, then ``"other"``; groups without a difference are left out.

    Examples
    --------
    >>> b = Params().with_overrides({"platform.selection_strictness": 0.0})
    >>> parameter_diffs(Params(), b)
    {'selection': {'platform.selection_strictness': (0.3, 0.0)}}
    """
    fa, fb = flat_params(a), flat_params(b)
    out: dict[str, dict[str, tuple[Any, Any]]] = {g: {} for g in (*MECHANISMS, OTHER)}
    for name, va in fa.items():
        if va != fb[name]:
            out[group_of(name)][name] = (va, fb[name])
    return {g: d for g, d in out.items() if d}


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """The metrics, checked against the run summary's (:data:`sim.world.metrics.SUMMARY_METRICS`).

    Examples
    --------
    >>> check_metrics(["return_rate"])
    ('return_rate',)
    """
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise ExplainError("--metric: give at least one metric")
    for m in metrics:
        if m not in SUMMARY_METRICS:
            raise ExplainError(
                f"--metric {m}: unknown metric; allowed: {', '.join(SUMMARY_METRICS)}"
            )
    return metrics


def check_channels(channels: Iterable[str] | None) -> tuple[str, ...]:
    """Channels to report in scenario mode (default: each channel and ``all``).

    Examples
    --------
    >>> check_channels(None)
    ('owners', 'streamer', 'conventional', 'all')
    """
    if channels is None:
        return CHANNEL_CHOICES
    channels = tuple(dict.fromkeys(channels))
    for ch in channels:
        if ch not in CHANNEL_CHOICES:
            raise ExplainError(
                f"--channel {ch}: unknown channel; allowed: {', '.join(CHANNEL_CHOICES)}"
            )
    return channels or CHANNEL_CHOICES


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(
    changes: Mapping[str, tuple[Any, Any]], sources: Mapping[str, str] | None = None
) -> str:
    """One line naming each parameter and its change, e.g. ``streamer.hype 1 -> 0.2``.

    Examples
    --------
    >>> describe({"streamer.hype": (1.0, 0.2)}, {"streamer.hype": "owners.hype"})
    'streamer.hype 1 -> 0.2 (= owners.hype)'
    """
    sources = sources or {}
    return "; ".join(
        f"{k} {_show(a)} -> {_show(b)}" + (f" (= {sources[k]})" if k in sources else "")
        for k, (a, b) in changes.items()
    )


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class Explanation:
    """A decomposition and everything needed to reproduce it.

    ``table`` is tidy: ``metric, channel, part, value, lo, hi, start, end, parameters``;
    ``part`` is a group name, ``structure`` (channel mode) or ``total``; ``value`` is the
    part's Shapley value on the replicate means, ``lo`` and ``hi`` the 95% t interval of the
    part computed replicate by replicate (NaN with one replicate); ``start`` and ``end`` are
    where the waterfall starts and ends (scenario mode: v(A) and v(B); channel mode: channel
    B's and channel A's metric), so the parts (with ``structure``) add up to ``end - start`` =
    ``total``; ``parameters`` names each part's parameter changes. ``runs`` holds every run's
    summary value (coalition, replicate, seed, channel, metric, value), ``values`` the
    coalition means, ``coalitions`` the overrides that make each coalition's world.
    """

    mode: str  # "scenarios" or "channels"
    table: pd.DataFrame
    players: dict[str, dict[str, tuple[Any, Any]]]
    sources: dict[str, str]  # channel mode: target parameter -> source parameter
    coalitions: dict[str, dict[str, Any]]  # label -> the overrides that make it
    values: pd.DataFrame
    runs: pd.DataFrame
    scenarios: list[Scenario]
    metrics: tuple[str, ...]
    channels: tuple[str, ...]
    seed: int
    seeds: list[int]
    start_label: str
    end_label: str
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> list[str]:
        """The players, then ``structure`` in channel mode."""
        return [*self.players, *([STRUCTURE] if self.mode == "channels" else [])]


def _label(coalition: frozenset[str], players: Sequence[str]) -> str:
    return "+".join(p for p in players if p in coalition) or "none"


def _run_coalitions(
    base: Params,
    overrides: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    metrics: Sequence[str],
    executor: Executor | None,
    progress: Callable[[int, int], None] | None,
) -> pd.DataFrame:
    """Run each coalition's parameters for every seed; identical parameter sets run once.

    Returns the tidy table ``coalition, replicate, seed, channel, metric, value``.
    """
    unique: dict[str, Params] = {}  # parameter text -> parameters
    key_of: dict[str, str] = {}  # coalition label -> parameter text
    for label, changes in overrides.items():
        try:
            params = base.with_overrides(dict(changes))
        except ParameterError as err:
            raise ExplainError(f"coalition {label}: {err}") from None
        key = json.dumps(params.to_dict(), sort_keys=True, default=str)
        unique.setdefault(key, params)
        key_of[label] = key
    keys = list(unique)
    todo = [
        {
            "params": unique[key].to_dict(),
            "seed": s,
            "tags": {"scenario": str(i), "replicate": r},
            "tables": ["summary"],
            "metrics": list(metrics),
        }
        for i, key in enumerate(keys)
        for r, s in enumerate(seeds)
    ]
    by_key: dict[str, list[pd.DataFrame]] = {}
    for task, res in zip(todo, run_all(todo, executor, progress), strict=True):
        by_key.setdefault(keys[int(task["tags"]["scenario"])], []).append(res["summary"])
    frames = []
    for label, key in key_of.items():
        df = pd.concat(by_key[key], ignore_index=True).drop(columns="scenario")
        df.insert(0, "coalition", label)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[
        ["coalition", "replicate", "seed", "channel", "metric", "value"]
    ]


def _means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over replicates per coalition, channel and metric (NaN replicates left out)."""
    return (
        runs.groupby(["coalition", "channel", "metric"], sort=False)["value"].mean().reset_index()
    )


def _coalition_overrides(players: Mapping[str, Mapping[str, tuple[Any, Any]]]) -> dict:
    """Per coalition (by label), the parameter values its groups set: each player's changes
    are (old, new) pairs; a coalition applies the new values of its players."""
    names = list(players)
    return {
        _label(s, names): {k: new for g in s for k, (_, new) in players[g].items()}
        for s in coalitions(names)
    }


def _seeds(scenario: Scenario, replicates: int | None, seed: int | None) -> tuple[int, list[int]]:
    replicates = scenario.replicates if replicates is None else replicates
    if not isinstance(replicates, int) or replicates < 1:
        raise ExplainError(f"--replicates {replicates} is outside the allowed range [1, 100000]")
    seed = scenario.seed if seed is None else seed
    return seed, replicate_seeds(seed, replicates)


def _check_players(players: Sequence[str], what: str) -> None:
    if len(players) > MAX_PLAYERS:
        raise ExplainError(
            f"{len(players)} mechanism groups differ {what} ({', '.join(players)}); exact "
            f"Shapley values need 2^k coalitions and are limited to k <= {MAX_PLAYERS} groups: "
            "make the two differ in fewer groups (or merge groups in analysis.explain.MECHANISMS)"
        )


def check_scenario_pair(a: Scenario, b: Scenario) -> dict[str, dict[str, tuple[Any, Any]]]:
    """The players of ``explain A B`` (:func:`parameter_diffs`), or an ExplainError saying why
    the pair cannot be explained: a different world size or number of days, or more than
    :data:`MAX_PLAYERS` groups. Runs nothing, so callers can check before spending time.

    Examples
    --------
    >>> from sim.experiments.scenario import load
    >>> check_scenario_pair(load("owners"), load("streamer"))
    {'other': {'channels.owners': (True, False), 'channels.streamer': (False, True)}}
    """
    wa, wb = a.params.world, b.params.world
    if (wa.consumers, wa.days) != (wb.consumers, wb.days):
        raise ExplainError(
            f"{a.name} and {b.name} differ in world size or days (world.consumers "
            f"{wa.consumers} vs {wb.consumers}, world.days {wa.days} vs {wb.days}): explain runs "
            "their hybrids on shared worlds; give both the same --consumers and --days"
        )
    players = parameter_diffs(a.params, b.params)
    _check_players(list(players), f"between {a.name} and {b.name}")
    return players


def check_channel_pair(
    scenario: Scenario, pair: Sequence[str]
) -> dict[str, dict[str, tuple[Any, Any]]]:
    """The players of ``explain SCENARIO --channels A B`` (:func:`swaps_for`, in the order of
    :data:`MECHANISMS`), or an ExplainError saying why the pair cannot be explained there.
    Runs nothing.

    Examples
    --------
    >>> from sim.experiments.scenario import load
    >>> list(check_channel_pair(load("hybrid"), ("owners", "streamer")))
    ['selection', 'vetting', 'hype', 'after_sales', 'price_terms', 'trust']
    """
    pair = tuple(pair)
    if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(CHANNELS):
        raise ExplainError(
            f"--channels {' '.join(pair)}: give two different channels of {', '.join(CHANNELS)}"
        )
    ch_a, ch_b = pair
    off = [ch for ch in pair if not getattr(scenario.params.channels, ch)]
    if off:
        raise ExplainError(
            f"{scenario.name}: channels.{off[0]} = false: channel mode needs a scenario in "
            f"which both {ch_a} and {ch_b} sell (e.g. hybrid)"
        )
    swaps = swaps_for(scenario, (ch_a, ch_b))
    names = [g for g in MECHANISMS if g in swaps]
    _check_players(names, f"for {ch_a} and {ch_b}")
    return {g: swaps[g] for g in names}


# ----------------------------------------------------------------------------------------------
# Scenario mode
# ----------------------------------------------------------------------------------------------
def explain_scenarios(
    a: Scenario,
    b: Scenario,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    channels: Sequence[str] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Explanation:
    """Split the difference B - A of each metric into mechanism groups (Shapley values).

    The parameters that differ between A and B are grouped by :data:`MECHANISMS` (the rest
    form ``other``); each group with a difference is a player. For every coalition S, the
    hybrid world takes B's values for the groups in S and A's for the others, and runs on the
    same replicate seeds as every other coalition. v(S) is the mean of a metric over the
    replicates; the parts add up exactly to v(B) - v(A).

    Parameters
    ----------
    a, b
        The scenarios, with the same number of consumers and of days.
    metrics
        Summary metrics (:data:`sim.world.metrics.SUMMARY_METRICS`).
    channels
        Channels to report (default: each channel and ``all``).
    replicates, seed
        Replicates per coalition and the base seed of their seeds (default: A's).
    executor
        Where the runs go (any ``concurrent.futures.Executor``); default: this process.
    progress
        Called as ``progress(done, total)`` after each run.

    Returns
    -------
    Explanation
        ``table`` has one row per metric, channel and part (the groups, then ``total``).

    References
    ----------
    Shapley (1953); Law (2015) on common random numbers (see the module docstring).

    Examples
    --------
    >>> from sim.experiments.scenario import load
    >>> small = ["world.consumers=1500", "levers.owners.count=20", "world.days=10"]
    >>> a = load("owners", small, replicates=1)
    >>> b = load("owners", [*small, "platform.selection_strictness=0.0"], replicates=1)
    >>> e = explain_scenarios(a, b, metrics=["return_rate"], channels=["owners"])
    >>> list(e.players), list(e.table.part)
    (['selection'], ['selection', 'total'])
    """
    metrics = check_metrics(metrics)
    channels = check_channels(channels)
    players = check_scenario_pair(a, b)
    names = list(players)
    base_seed, seeds = _seeds(a, replicates, seed)
    overrides = _coalition_overrides(players)
    started, t0 = now(), time.perf_counter()
    runs = _run_coalitions(a.params, overrides, seeds, metrics, executor, progress)
    index = list(itertools.product(metrics, channels))
    cube = _cube(runs, list(overrides), index)  # per coalition: rows x replicates
    mean = {label: _nanmean(x) for label, x in cube.items()}
    none, everyone = _label(frozenset(), names), _label(frozenset(names), names)
    phi = shapley(names, lambda s: mean[_label(s, names)])
    phi_r = shapley(names, lambda s: cube[_label(s, names)])
    parts = [(g, phi[g], phi_r[g], describe(players[g])) for g in names]
    parts.append((TOTAL, mean[everyone] - mean[none], cube[everyone] - cube[none], ""))
    rows = _rows(index, parts, mean[none], mean[everyone])
    same = a.name == b.name
    return Explanation(
        mode="scenarios",
        table=_table(rows, a.name + (" (A)" if same else ""), b.name + (" (B)" if same else "")),
        players=players,
        sources={},
        coalitions=overrides,
        values=_means(runs),
        runs=runs,
        scenarios=[a, b],
        metrics=metrics,
        channels=channels,
        seed=base_seed,
        seeds=seeds,
        start_label=a.name + (" (A)" if same else ""),
        end_label=b.name + (" (B)" if same else ""),
        timings={
            "started": started,
            "wall_s": time.perf_counter() - t0,
            "runs": _unique_runs(overrides, seeds),
        },
    )


def _cube(
    runs: pd.DataFrame, labels: Sequence[str], index: Sequence[tuple[str, str]]
) -> dict[str, np.ndarray]:
    """Per coalition, its runs' values as an array: rows (metric, channel) x replicates."""
    reps = sorted(runs["replicate"].unique())
    wide = runs.pivot_table(
        index=["metric", "channel"],
        columns=["coalition", "replicate"],
        values="value",
        aggfunc="first",
        dropna=False,
    )
    wide = wide.reindex(
        index=pd.MultiIndex.from_tuples(index), columns=pd.MultiIndex.from_product([labels, reps])
    )
    return {label: wide[label].to_numpy(dtype=float) for label in labels}


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis, replicates without a value (NaN) left out; NaN if none has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=-1)


def _rows(
    index: Sequence[tuple[str, str]],
    parts: Sequence[tuple[str, np.ndarray, np.ndarray, str]],
    start: np.ndarray,
    end: np.ndarray,
) -> list[tuple]:
    """Table rows: per (metric, channel), each part's value with the 95% interval of its
    per-replicate values (part, value, per-replicate values, parameters)."""
    rows = []
    for i, (metric, channel) in enumerate(index):
        for name, value, per_replicate, text in parts:
            _, lo, hi = mean_ci(per_replicate[i])
            rows.append((metric, channel, name, value[i], lo, hi, start[i], end[i], text))
    return rows


def _unique_runs(overrides: Mapping[str, Mapping[str, Any]], seeds: Sequence[int]) -> int:
    texts = {json.dumps(dict(o), sort_keys=True, default=str) for o in overrides.values()}
    return len(texts) * len(seeds)


def _table(rows: list[tuple], start_label: str, end_label: str) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.attrs.update(start_label=start_label, end_label=end_label)
    return table


# ----------------------------------------------------------------------------------------------
# Channel mode
# ----------------------------------------------------------------------------------------------
def swaps_for(scenario: Scenario, pair: tuple[str, str]) -> dict[str, dict[str, tuple[Any, Any]]]:
    """The swaps of a channel pair in a scenario, resolved to values, by group.

    Parameters
    ----------
    scenario
        The scenario whose parameters the swaps read.
    pair
        (channel A, channel B): the swaps give B what A has.

    Returns
    -------
    dict
        Group -> {target parameter: (its value, the value swapped in)}.

    Examples
    --------
    >>> from sim.experiments.scenario import load
    >>> swaps = swaps_for(load("hybrid"), ("owners", "streamer"))
    >>> swaps["trust"]
    {'consumers.trust_streamer': (0.6, 0.7)}
    """
    if pair not in CHANNEL_SWAPS:
        allowed = ", ".join(f"{x} {y}" for x, y in CHANNEL_SWAPS)
        raise ExplainError(
            f"--channels {' '.join(pair)}: no counterfactual swaps are declared for this pair; "
            f"allowed: {allowed} (analysis.explain.CHANNEL_SWAPS)"
        )
    flat = flat_params(scenario.params)
    out: dict[str, dict[str, tuple[Any, Any]]] = {}
    for group, swaps in CHANNEL_SWAPS[pair].items():
        changes = {}
        for target, source in swaps:
            where = f"analysis.explain.CHANNEL_SWAPS[{pair}][{group!r}]: {target} <- {source!r}"
            try:
                value = flat[field_name(source)] if isinstance(source, str) else source
                changes[target] = (flat[field_name(target)], check_value(target, value))
            except ParameterError as err:
                raise ExplainError(f"{where}: {err}") from None
        if changes:
            out[group] = changes
    return out


def explain_channels(
    scenario: Scenario,
    pair: Sequence[str],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    replicates: int | None = None,
    seed: int | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Explanation:
    """Split the gap metric(A) - metric(B) between two channels of one scenario.

    Each mechanism group with swaps for the pair (:data:`CHANNEL_SWAPS`) is a player. A run
    with the swaps of coalition S made gives the gap d(S) = metric(A) - metric(B); a group's
    part is its Shapley value in the game w(S) = d(empty set) - d(S), the share of the gap
    that disappears when channel B is given what channel A has. The parts add up to
    d(empty set) - d(all groups); what the swaps cannot explain, d(all groups), is the part
    ``structure`` = total - sum of the parts: reach and format (who sees a product, how often,
    through what) and the owners' mechanisms no parameter can give the streamer (her own
    after-sales, fit and advice).

    Parameters
    ----------
    scenario
        A scenario in which both channels sell.
    pair
        (channel A, channel B), a key of :data:`CHANNEL_SWAPS`.
    metrics, replicates, seed, executor, progress
        As for :func:`explain_scenarios`.

    Returns
    -------
    Explanation
        ``table`` has one row per metric and part (the groups, ``structure``, ``total``),
        channel ``"A - B"``; ``start`` is channel B's metric, ``end`` channel A's.

    References
    ----------
    Shapley (1953); see the module docstring.

    Examples
    --------
    >>> from sim.experiments.scenario import load
    >>> s = load("hybrid", ["world.consumers=1500", "levers.owners.count=20", "world.days=10"])
    >>> e = explain_channels(s, ("owners", "streamer"), metrics=["return_rate"], replicates=1)
    >>> list(e.table.part)
    ['selection', 'vetting', 'hype', 'after_sales', 'price_terms', 'trust', 'structure', 'total']
    """
    metrics = check_metrics(metrics)
    players = check_channel_pair(scenario, pair)
    names = list(players)
    ch_a, ch_b = tuple(pair)
    base_seed, seeds = _seeds(scenario, replicates, seed)
    overrides = _coalition_overrides(players)
    started, t0 = now(), time.perf_counter()
    runs = _run_coalitions(scenario.params, overrides, seeds, metrics, executor, progress)
    k = len(metrics)
    cube = _cube(runs, list(overrides), list(itertools.product(metrics, (ch_a, ch_b))))
    cube = {label: x.reshape(k, 2, -1) for label, x in cube.items()}  # metric, A|B, replicate
    mean = {label: _nanmean(x) for label, x in cube.items()}  # metric, A|B
    gap = {label: m[:, 0] - m[:, 1] for label, m in mean.items()}
    gap_r = {label: x[:, 0] - x[:, 1] for label, x in cube.items()}
    none = _label(frozenset(), names)
    phi = shapley(names, lambda s: gap[none] - gap[_label(s, names)])
    phi_r = shapley(names, lambda s: gap_r[none] - gap_r[_label(s, names)])
    sources = {
        t: src for g in names for t, src in CHANNEL_SWAPS[(ch_a, ch_b)][g] if isinstance(src, str)
    }
    parts = [(g, phi[g], phi_r[g], describe(players[g], sources)) for g in names]
    explained = sum((p[1] for p in parts), np.zeros(k))
    explained_r = sum((p[2] for p in parts), np.zeros_like(gap_r[none]))
    parts.append(
        (
            STRUCTURE,
            gap[none] - explained,
            gap_r[none] - explained_r,
            "what the swaps leave: reach and format, and the owner's own after-sales, fit and "
            "advice",
        )
    )
    parts.append((TOTAL, gap[none], gap_r[none], ""))
    label = f"{ch_a} - {ch_b}"
    rows = _rows([(m, label) for m in metrics], parts, mean[none][:, 1], mean[none][:, 0])
    return Explanation(
        mode="channels",
        table=_table(rows, ch_b, ch_a),
        players={g: players[g] for g in names},
        sources=sources,
        coalitions=overrides,
        values=_means(runs),
        runs=runs,
        scenarios=[scenario],
        metrics=metrics,
        channels=(ch_a, ch_b),
        seed=base_seed,
        seeds=seeds,
        start_label=ch_b,
        end_label=ch_a,
        timings={
            "started": started,
            "wall_s": time.perf_counter() - t0,
            "runs": _unique_runs(overrides, seeds),
        },
    )


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------
def format_value(metric: str, v: float, signed: bool = False, half: float = np.nan) -> str:
    """A value as the reports show it: shares in percent (their differences in percentage
    points), money and counts with two decimals below 100; ``half`` adds "±half-width"."""
    if v is None or not np.isfinite(v):
        return "-"
    sign = "+" if signed else ""
    share = METRICS.get(metric) is not None and METRICS[metric].is_share
    scale = 100.0 if share else 1.0
    spec = ",.0f" if abs(v) >= 100 and not share else ",.2f"
    text = f"{scale * v:{sign}{spec}}"
    if np.isfinite(half):
        text += f" ±{scale * half:{spec}}"
    return text + ((" pp" if signed else "%") if share else "")


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def format_explanation(e: Explanation) -> str:
    """A readable table: per metric, the start, each part, the end and the total.

    Parameters
    ----------
    e
        An explanation.

    Returns
    -------
    str
        Text for a terminal: shares in percent, their parts in percentage points; with two or
        more replicates each part shows the half-width of its 95% interval over replicates.
    """
    lines: list[str] = []
    n = len(e.seeds)
    reps = f"{n} replicate(s) on common random numbers" + (
        f"; ± is the half-width of a 95% Student-t interval with {n - 1} degree(s) of freedom"
        if n > 1
        else ""
    )
    if e.mode == "scenarios":
        lines.append(
            f"Why {e.end_label} differs from {e.start_label}: exact Shapley values over "
            f"{len(e.players)} mechanism group(s), {reps}. The parts add up to the total "
            f"(B - A)."
        )
    else:
        lines.append(
            f"Why {e.end_label} differs from {e.start_label} in {e.scenarios[0].name}: exact "
            f"Shapley values over {len(e.players)} group(s) of swaps giving {e.start_label} "
            f"{_possessive(e.end_label)} values or lifting a limit {e.start_label} works under "
            f"(each group's changes are listed), {reps}. '{STRUCTURE}' is what the swaps "
            "cannot explain: total - sum of the parts."
        )
    if e.players:
        lines.append("")
        width = max(len(g) for g in e.players)
        for g, changes in e.players.items():
            lines.append(f"  {g:<{width}}  {describe(changes, e.sources)}")
    else:
        lines.append("No parameter differs: nothing to explain (every total is 0).")
    if any(k.startswith("channels.") for k in e.players.get(OTHER, {})):
        lines.append(
            "  (the scenarios switch channels on or off, which no mechanism group holds; to see "
            "which mechanisms separate two channels, explain one scenario in channel mode, "
            "e.g. fishschool explain hybrid --channels owners streamer)"
        )
    t = e.table
    columns = list(dict.fromkeys(t.channel))
    for metric in e.metrics:
        m = t[t.metric == metric]
        first = m.drop_duplicates("channel").set_index("channel")
        by_part = m.set_index(["part", "channel"])

        def cells(part: str, m: pd.DataFrame = by_part, metric: str = metric) -> list[str]:
            out = []
            for c in columns:
                row = m.loc[(part, c)]
                out.append(format_value(metric, row["value"], True, (row["hi"] - row["lo"]) / 2))
            return out

        rows = [(e.start_label, [format_value(metric, first.loc[c, "start"]) for c in columns])]
        rows += [(p, cells(p)) for p in dict.fromkeys(m.part) if p != TOTAL]
        rows.append((e.end_label, [format_value(metric, first.loc[c, "end"]) for c in columns]))
        rows.append((TOTAL, cells(TOTAL)))
        w0 = max(len(metric), *(len(r[0]) + 2 for r in rows)) + 2
        ws = [max(len(c), *(len(r[1][j]) for r in rows)) for j, c in enumerate(columns)]
        lines.append("")
        header = "  ".join(c.rjust(w) for c, w in zip(columns, ws, strict=True))
        lines.append(metric.ljust(w0) + header)
        for name, row in rows:
            text = "  ".join(x.rjust(w) for x, w in zip(row, ws, strict=True))
            lines.append(("  " + name).ljust(w0) + text)
    return "\n".join(lines)


def manifest(e: Explanation, command: list[str] | None = None) -> dict[str, Any]:
    """What an explanation folder records about how it was made (the conventions of
    :func:`sim.experiments.output.experiment_manifest`, plus the players and coalitions)."""
    from sim.experiments.output import TOOL, scenario_record
    from sim.experiments.provenance import provenance

    return {
        "tool": TOOL,
        "content": "explanation",
        **provenance(command, e.timings.get("started")),
        "mode": e.mode,
        "seed": e.seed,
        "replicates": len(e.seeds),
        "seeds": e.seeds,
        "metrics": list(e.metrics),
        "channels": list(e.channels),
        "start": e.start_label,
        "end": e.end_label,
        "players": {g: {k: list(v) for k, v in d.items()} for g, d in e.players.items()},
        "sources": e.sources,
        "coalitions": e.coalitions,
        "scenarios": [scenario_record(s) for s in e.scenarios],
        "timings": e.timings,
    }


def write_tables(e: Explanation, folder: str | Path, command: list[str] | None = None) -> None:
    """``explain.csv`` (the decomposition), ``runs.csv`` (every run's values) and
    ``manifest.json``, into an existing folder (see
    :func:`sim.experiments.output.atomic_folder`)."""
    folder = Path(folder)
    e.table.to_csv(folder / "explain.csv", index=False)
    e.runs.to_csv(folder / "runs.csv", index=False)
    with open(folder / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest(e, command), fh, indent=2, default=str)


def write_explanation(e: Explanation, folder: str | Path, command: list[str] | None = None) -> None:
    """:func:`write_tables` and the waterfall figure ``explain.png``, into an existing folder."""
    import matplotlib.pyplot as plt

    from analysis.plots import explain_waterfall

    write_tables(e, folder, command)
    fig = explain_waterfall(e.table)
    fig.savefig(Path(folder) / "explain.png")
    plt.close(fig)


EXPLAIN_PAIR = ("owners", "streamer")  # the channel pair compare --explain explains


def compare_plan(
    scenarios: Sequence[Scenario], pair: tuple[str, str] = EXPLAIN_PAIR
) -> list[tuple[str, list[Scenario]]]:
    """What ``compare --explain`` explains, as (folder name, scenarios) pairs: each scenario in
    which both channels of ``pair`` sell, in channel mode (one scenario); if there is none, the
    first scenario against each other one, in scenario mode (two scenarios). Checked before
    anything runs: an :class:`ExplainError` says why an explanation cannot be made."""
    both = [s for s in scenarios if all(getattr(s.params.channels, ch) for ch in pair)]
    if both:
        for s in both:
            check_channel_pair(s, pair)
        return [(s.name, [s]) for s in both]
    first = scenarios[0]
    for s in scenarios[1:]:
        check_scenario_pair(first, s)
    return [(f"{first.name}-vs-{s.name}", [first, s]) for s in scenarios[1:]]


def explain(
    scenarios: Sequence[Scenario],
    pair: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    channels: Sequence[str] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Explanation:
    """Channel mode for one scenario and a ``pair`` of channels (:func:`explain_channels`),
    scenario mode for two scenarios (:func:`explain_scenarios`, ``channels`` picks the
    channels reported; channel mode reports its pair); anything else is an
    :class:`ExplainError`."""
    common = dict(
        metrics=metrics, replicates=replicates, seed=seed, executor=executor, progress=progress
    )
    if pair is not None:
        if len(scenarios) != 1:
            raise ExplainError(f"channel mode explains one scenario, got {len(scenarios)}")
        return explain_channels(scenarios[0], tuple(pair), **common)
    if len(scenarios) != 2:
        raise ExplainError(
            f"explain takes two scenarios (A B), or one with a pair of channels; got "
            f"{len(scenarios)}"
        )
    return explain_scenarios(scenarios[0], scenarios[1], channels=channels, **common)


def explain_plan(
    plan: Sequence[tuple[str, list[Scenario]]],
    *,
    replicates: int,
    seed: int,
    executor: Executor | None = None,
    progress: Callable[[], Callable[[int, int], None] | None] = lambda: None,
    announce: Callable[[str], None] = lambda text: None,
    pair: tuple[str, str] = EXPLAIN_PAIR,
) -> list[tuple[str, Explanation]]:
    """Each explanation of a :func:`compare_plan` on the experiment's first ``replicates``
    seeds (from ``seed``), as (folder name, explanation). ``progress()`` makes each one's
    progress callback; ``announce`` hears what is about to be explained."""
    out = []
    for name, scenarios in plan:
        one = len(scenarios) == 1
        what = f"--channels {' '.join(pair)}" if one else scenarios[1].name
        announce(f"explain {scenarios[0].name} {what}")
        e = explain(
            scenarios,
            pair if one else None,
            replicates=replicates,
            seed=seed,
            executor=executor,
            progress=progress(),
        )
        out.append((name, e))
    return out
