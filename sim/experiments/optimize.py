"""Robust multi-objective search over the levers: ``fishschool optimize OPT.toml``.

An optimisation file is a scenario file (same grammar, :mod:`sim.experiments.scenario`) whose
levers have ranges to search, plus what to optimise, the risk measure over the uncertainty and
the search's settings::

    # Question: with a fixed launch budget, which mix earns the brand most and returns least?
    extends = "../base.toml"       # the scenario held fixed (a path or a shipped name)
    seed = 1                       # the uncertainty samples' seeds derive from it

    [world]                        # held fixed, as in any scenario
    consumers = 10_000
    days = 120

    [levers]                       # [low, high] or {values = [...]}: searched; one value: fixed
    owners.commission = [0.05, 0.30]
    owners.count = [20, 150]       # a whole-number parameter: whole numbers are searched
    owners.recruitment = {values = ["random", "degree"]}   # a choice among listed values
    streamer.discount = [0.1, 0.5]

    [uncertainties]                # [low, high]: sampled (Latin hypercube); one value: fixed
    purchase.trust = [1.0, 3.0]

    [[objectives]]                 # one table per objective; the first is the primary one
    metric = "brand_profit"        # a summary metric (sim/world/metrics.py)
    channel = "all"                # owners | streamer | conventional | all (default all)
    goal = "max"                   # max | min (default: the metric's declared better way)

    [[objectives]]
    metric = "return_rate"

    [risk]                         # one number per objective from its values over the samples
    measure = "cvar"               # mean (default) | cvar | regret
    level = 0.25                   # cvar: the mean of the worst 25% of the samples

    [samples]                      # the uncertainty every candidate meets
    count = 8                      # K samples, each a parameter draw and a seed (default 8)
    posterior = "../../docs/calibration/posterior_samples.csv"   # optional

    [budget]                       # optional: a spending limit (a constraint)
    spend = ["commission", "slot_fee", "discount"]   # cost metrics (channel all) it pays
    prices = {"owners.count" = 300.0}  # RMB per unit of a lever over the run (no model cost)
    limit = 14_000.0               # RMB per 1,000 consumers over the run
    over = "mean"                  # the mean spend over the samples (or "every" sample)

    [search]
    algorithm = "nsga2"
    population = 12                # candidates a generation (default 12)
    generations = 6                # (default 6)
    seed = 1                       # default: the file's seed

``--set`` changes what is held fixed (``world.consumers=2000``) or a setting of the file
(``search.generations=2``, ``samples.count=4``, ``risk.measure=regret``), never a searched
lever or a sampled uncertainty.

**Candidates and samples.** A candidate is one value of every searched lever (a *mix*):
ranges of whole-number parameters give whole numbers, other ranges are searched on a grid of
1/1000 of the range, listed values are a choice. The uncertainty is K samples: sample k is a
parameter draw (a weighted draw of the calibration's ``posterior_samples.csv`` with sample k's
seed, as ``compare --posterior`` draws; ranges in ``[uncertainties]`` are sampled by Latin
hypercube and set on top) and the seed s_k of its run (``replicate_seeds(seed, K)``). Every
candidate is run on the same K samples and seeds (common random numbers), so differences
between mixes are paired and regret against the best mix of a sample is meaningful.

**Evaluation.** Each (candidate, sample) is one run: a task of the run engine
(:func:`sim.experiments.engine.run_one`, ``tables = ["summary"]``, only the metrics needed,
``form = "rows"``), mapped with :func:`sim.experiments.engine.run_many` on any
``concurrent.futures.Executor``: serially here, local processes or a Dask cluster, with the
same numbers. A generation's candidates go out together, in one call of the run engine (which
sends them to workers in batches of about a second). Each finished run is
stored atomically in ``runs/KEY.json`` (the sweep's record format and writer), KEY hashing the
parameters held fixed, the model, the metrics kept, the model's source code, the candidate's
levers, the sample's draw and its seed: a rerun of the same file reads what is there and
computes the rest.

**Search.** pymoo's NSGA-II (Deb et al. 2002) in its ask-and-tell form: ``ask()`` gives a
generation's candidates (the first by Latin hypercube), they are evaluated together,
``tell()`` hands back one number per objective (the risk measure, oriented so that smaller is
better) and one constraint (the budget's excess over its limit or, when an objective value is
missing, the number of missing values). The
search is deterministic in its seed: a restarted optimisation asks the same candidates again,
finds their runs stored and recomputes none (a kill loses only the runs in flight); a file
whose ``generations`` grew reuses every earlier generation.

**Risk.** For objective j and candidate x with values v_k(x) over the samples, the loss is
l_k = -v_k for a maximised objective and v_k otherwise. ``mean``: the mean loss.
``cvar``: the mean of the worst ceil(level x K) losses (conditional value at risk).
``regret``: the largest regret over the samples, where the regret of x on sample k is its loss
minus the smallest loss on sample k of the feasible candidates evaluated so far (of all of
them while none is feasible): 0 for the best mix of each sample, positive otherwise; as later
generations find better mixes, the regrets of the
population are recomputed before each ``tell``, so the search compares like with like.

**Budget.** The model charges brands per sale (commission, discount), per slot (slot fees) and
per ad exposure (ads), but nothing for recruiting owners or for 2b-live training: a launch
budget cannot be split into lever values by the model's own economics. So the budget is a
constraint on a computed cost: the run's spend (the listed cost metrics, channel ``all``) plus
declared prices of lever values (RMB per unit of the lever over the run: owners recruited,
weekly 2b-live sessions), in RMB per 1,000 consumers; its mean over the samples (or its value
on every sample) must not exceed the limit. Candidates over it are infeasible: NSGA-II prefers
any feasible candidate and ranks the infeasible by how far over they are.

**Results** (:func:`analyse`, over every candidate evaluated): the Pareto set of the feasible
candidates on the search's objectives; the recommended robust mix, the Pareto candidate with
the smallest maximum regret on the primary objective (regret against the best feasible mix
of each sample; ties: the better mean), with its regret on each sample; and what flips it:
for each uncertain parameter, the samples split at its median and the robust mix of each half,
with the rank correlation of the parameter with the recommended mix's regret.

Output folder (a resumable store like a sweep's; the result files are written aside and,
once all are written, each replaces its previous version): ``runs/``, ``manifest.json`` (the
file's text, the base parameters, levers, objectives, risk, samples and seeds, search
settings, provenance with pymoo's version, timings), ``samples.csv``, ``evaluations.csv``
(every candidate x sample: levers, objective values, regrets, spend), ``candidates.csv``,
``pareto.csv``, ``flips.csv``,
``generations.csv``; :mod:`analysis.optimize` adds ``pareto.png`` and ``recommendation.md``.

``model = "zdt1"`` (a verification model, as a sweep's ``ishigami``) replaces the simulation
by the ZDT1 test problem (Zitzler, Deb & Thiele 2000) on the searched levers (any names,
ranges inside [0, 1]): objectives ``f1`` = the first lever and ``f2`` = g (1 - sqrt(f1 / g))
with g = 1 + 9 x the mean of the other levers, plus the sum of the sampled uncertainties (any
names); both minimised, its Pareto front is f2 = 1 - sqrt(f1) (shifted by the mean of that
sum under the mean risk measure).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import tomllib
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.experiments import atomic
from sim.experiments.engine import MODELS, ROW_COLUMNS, _Slots, default_workers, run_many
from sim.experiments.provenance import now, provenance
from sim.experiments.scenario import (
    FileSettings,
    Scenario,
    ScenarioError,
    _walk,
    build,
    is_varied,
    parameter_name,
    parse_override,
    read_file,
    replicate_seeds,
)
from sim.experiments.sweep import (
    MODEL_TIMINGS,
    _leftover,
    _RecordWriter,
    model_digest,
    read_records,
    run_key,
)
from sim.world.channels import ALL, CHANNELS
from sim.world.metrics import COST_KINDS, METRICS, SUMMARY_METRICS
from sim.world.params import (
    ParameterError,
    Params,
    _did_you_mean,
    check_value,
    field_of,
    is_whole_number,
    kind_of,
    read_toml,
)

OPT_SECTIONS = ("objectives", "risk", "samples", "budget", "search")
OPT_KEYS = ("model", *OPT_SECTIONS)
OPT_MODELS = ("fishschool", "zdt1")
MEASURES = ("mean", "cvar", "regret")
ALGORITHMS = ("nsga2",)
GOALS = ("max", "min")
CHANNEL_NAMES = (*CHANNELS, ALL)
BUDGET_OVER = ("mean", "every")
GRID = 1000  # a range is searched on a grid of 1/GRID of its width
MAX_RUNS = 1_000_000  # population x generations x samples at most
# Kept from every run besides the objectives and the spend, for the tables.
REPORT_METRICS = ("brand_profit", "net_gmv", "return_rate", "reach_share", "profit_per_net_rmb")
ZDT1_METRICS = ("f1", "f2")
MISSING_LOSS = 1e12  # the loss of a missing objective value (its candidate is infeasible)
LIMITS = {
    "samples.count": (1, 10_000),
    "search.population": (4, 10_000),
    "search.generations": (1, 10_000),
    "search.seed": (0, 2**63 - 1),
}


class OptimizeError(ScenarioError):
    """An optimisation cannot start: its file, its output folder or its plan is wrong."""


class RunFailed(RuntimeError):
    """A run of the optimisation raised; its record is in ``runs/KEY.error.json``."""


# ----------------------------------------------------------------------------------------------
# The optimisation file
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lever:
    """A searched lever: a numeric range or a choice among listed values."""

    name: str
    low: float = 0.0
    high: float = 1.0
    values: tuple[Any, ...] | None = None
    integer: bool = False

    @property
    def is_choice(self) -> bool:
        return self.values is not None

    @property
    def bounds(self) -> tuple[float, float]:
        """The search variable's bounds: the range, or [0, number of values) for a choice."""
        if self.values is not None:
            return 0.0, float(len(self.values))
        return self.low, self.high

    def decode(self, x: float) -> Any:
        """The lever value of search variable ``x``."""
        if self.values is not None:
            return self.values[min(max(int(math.floor(x)), 0), len(self.values) - 1)]
        x = min(max(float(x), self.low), self.high)
        if self.integer:
            return min(max(int(round(x)), math.ceil(self.low)), math.floor(self.high))
        step = (self.high - self.low) / GRID
        return round(self.low + round((x - self.low) / step) * step, 10)


@dataclass(frozen=True)
class Objective:
    metric: str
    channel: str = ALL
    goal: str = "max"

    @property
    def label(self) -> str:
        """``metric.channel``: its column in the tables."""
        return f"{self.metric}.{self.channel}"

    @property
    def sign(self) -> float:
        """Loss = sign x value: larger losses are worse."""
        return -1.0 if self.goal == "max" else 1.0


@dataclass(frozen=True)
class Budget:
    spend: tuple[str, ...]
    prices: tuple[tuple[str, float], ...]
    limit: float  # RMB per 1,000 consumers over the run
    over: str = "mean"


@dataclass(frozen=True)
class Optimization:
    name: str
    question: str
    path: Path
    text: str
    base: Scenario  # what is held fixed; its seed is the samples' base seed
    levers: tuple[Lever, ...]
    uncertain: tuple[tuple[str, float, float], ...]  # sampled ranges: name, low, high
    objectives: tuple[Objective, ...]
    measure: str
    level: float | None
    samples: int
    posterior: Path | None
    budget: Budget | None
    population: int
    generations: int
    search_seed: int
    model: str = "fishschool"
    overrides: tuple[str, ...] = ()

    @property
    def seed(self) -> int:
        return self.base.seed

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(self.text.encode())
        h.update(self.base.sha256.encode())
        for o in self.overrides:
            h.update(b"\0" + o.encode())
        return h.hexdigest()

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics every run keeps: objectives, spend and the tables' own."""
        if self.model == "zdt1":
            return ZDT1_METRICS
        names = [o.metric for o in self.objectives]
        names += list(self.budget.spend) if self.budget else []
        names += list(REPORT_METRICS)
        return tuple(dict.fromkeys(names))

    @property
    def planned_runs(self) -> int:
        return self.population * self.generations * self.samples


def _opt_override(item: str) -> tuple[str, str, Any] | None:
    """``search.population=8`` as (section, key, value); None for a scenario override."""
    key, sep, text = item.partition("=")
    section, _, rest = key.strip().partition(".")
    if not sep or section not in OPT_KEYS:
        return None
    if section == "model":
        raise OptimizeError(f"--set {item}: the model is set in the file")
    if section == "objectives":
        raise OptimizeError(f"--set {item}: objectives are set in the file ([[objectives]])")
    if not rest or "." in rest:
        raise OptimizeError(f"--set {item}: expected {section}.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return section, rest, value


def is_optimization_file(path: str | Path) -> bool:
    """A readable TOML file with an optimisation's own tables (``objectives``, ``search``)."""
    path = Path(path)
    try:
        raw = read_toml(path) if path.is_file() else {}
    except (ParameterError, OSError):
        return False
    return "objectives" in raw or "search" in raw


def load_optimization(path: str | Path, overrides: Iterable[str] = ()) -> Optimization:
    """Read and check an optimisation file; ``overrides`` (``--set``) change what it holds
    fixed or its own settings (``search.generations=2``, ``samples.count=4``). Errors are one
    line naming the file (or ``--set``), the key, the value and what is allowed."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an optimisation file" if path.is_dir() else "file not found"
        raise ScenarioError(f"{path}: {what}")
    read = read_file(path, OPT_KEYS)
    where = str(path)
    own: dict[str, Any] = {k: read.flat.pop(k) for k in OPT_KEYS if k in read.flat}
    for k in OPT_KEYS:
        read.origin.pop(k, None)
    overrides = tuple(overrides)
    scenario_overrides = []
    set_origin: dict[str, str] = {}
    for item in overrides:
        own_setting = _opt_override(item)
        if own_setting is None:
            scenario_overrides.append(item)
            continue
        section, key, value = own_setting
        table = own.get(section, {})
        if not isinstance(table, Mapping):
            raise OptimizeError(f"{where}: [{section}] must be a table")
        own[section] = {**table, key: value}
        set_origin[f"{section}.{key}"] = f"--set {item}"

    def at(key: str) -> str:
        return set_origin.get(key, where)

    model = own.get("model", "fishschool")
    if model not in OPT_MODELS:
        raise OptimizeError(
            f"{where}: model = {model!r} is not allowed: choose one of {OPT_MODELS}"
        )
    if "replicates" in read.flat and read.origin.get("replicates") == where:
        raise OptimizeError(
            f"{where}: replicates: an optimisation runs each candidate once per uncertainty "
            "sample; set [samples] count instead"
        )
    read.flat.pop("replicates", None)
    # Varied levers are searched, varied uncertainties sampled; the rest is held fixed. They
    # keep the order of the file itself (keys it extends come first in read.flat).
    varied = {k: read.flat.pop(k) for k in list(read.flat) if is_varied(read.flat[k])}
    raw = read_toml(path)
    listed = [
        f"{section}.{key}"
        for section in ("levers", "uncertainties")
        if isinstance(raw.get(section), Mapping)
        for key, _ in _walk(raw[section])
    ]
    order = {k: i for i, k in enumerate(listed)}
    varied = dict(sorted(varied.items(), key=lambda kv: order.get(kv[0], len(order))))
    origin = {k: read.origin.pop(k) for k in varied}
    for item in scenario_overrides:
        key = parse_override(item)[0]
        if key in varied:
            what = "searches" if key.startswith("levers.") else "samples"
            raise OptimizeError(f"--set {item}: the optimisation {what} this parameter")
    levers: list[Lever] = []
    uncertain: list[tuple[str, float, float]] = []
    for key, spec in varied.items():
        section, _, rest = key.partition(".")
        label = f"{origin[key]}: {key}"
        if section == "levers":
            levers.append(_lever(label, key, rest, spec, model, origin[key]))
        elif section == "uncertainties":
            uncertain.append(_uncertain(label, key, rest, spec, model, origin[key]))
        else:
            raise OptimizeError(
                f"{label}: only levers (searched) and uncertainties (sampled) take a range; "
                f"[{section}] sets one value"
            )
    if not levers:
        raise OptimizeError(
            f"{where}: nothing to search: give a lever a range [low, high] or {{values = [...]}}"
        )
    if model == "zdt1":
        if len(levers) < 2 or any(lv.is_choice for lv in levers):
            raise OptimizeError(f"{where}: model 'zdt1' searches two or more ranges in [0, 1]")
        fixed_levers = [k for k in read.flat if k.startswith(("levers.", "uncertainties."))]
        if fixed_levers:
            raise OptimizeError(
                f"{where}: {fixed_levers[0]}: model 'zdt1' has no parameters to hold fixed"
            )
    base = build(FileSettings(read.path, read.flat, read.origin, read.text), scenario_overrides)
    objectives = _objectives(where, own.get("objectives"), model)
    measure, level = _risk(where, own.get("risk", {}), at)
    count, posterior = _samples(path, own.get("samples", {}), at)
    if posterior is not None and model == "zdt1":
        raise OptimizeError(f"{at('samples.posterior')}: samples.posterior: not for model 'zdt1'")
    budget = _budget(where, own.get("budget"), at, levers, model)
    search = own.get("search", {})
    if not isinstance(search, Mapping):
        raise OptimizeError(f"{where}: [search] must be a table")
    _unknown(where, "search", search, ("algorithm", "population", "generations", "seed"))
    algorithm = search.get("algorithm", "nsga2")
    if algorithm not in ALGORITHMS:
        raise OptimizeError(
            f"{at('search.algorithm')}: search.algorithm = {algorithm!r} is not allowed: "
            f"choose one of {', '.join(ALGORITHMS)}"
        )
    population = _int(at, "search.population", search.get("population", 12))
    generations = _int(at, "search.generations", search.get("generations", 6))
    search_seed = _int(at, "search.seed", search.get("seed", base.seed))
    runs = population * generations * count
    if runs > MAX_RUNS:
        raise OptimizeError(
            f"{where}: the search plans up to {runs:,} runs (population {population} x "
            f"generations {generations} x samples {count}), above the limit of {MAX_RUNS:,}"
        )
    opt = Optimization(
        name=base.name,
        question=base.question,
        path=path,
        text=path.read_text(encoding="utf-8"),
        base=base,
        levers=tuple(levers),
        uncertain=tuple(uncertain),
        objectives=objectives,
        measure=measure,
        level=level,
        samples=count,
        posterior=posterior,
        budget=budget,
        population=population,
        generations=generations,
        search_seed=search_seed,
        model=model,
        overrides=overrides,
    )
    if model == "fishschool":
        _check_corners(opt)
        if posterior is not None:
            fixed = {
                parameter_name(k, where): k
                for k, o in read.origin.items()
                if k.startswith("uncertainties.") and o == where
            }
            _check_posterior(opt, at("samples.posterior"), fixed)
    return opt


def _unknown(where: str, section: str, table: Mapping[str, Any], allowed: Sequence[str]):
    for key in table:
        if key not in allowed:
            raise OptimizeError(
                f"{where}: unknown key '{section}.{key}'{_did_you_mean(key, list(allowed))}; "
                f"allowed in [{section}]: {', '.join(allowed)}"
            )


def _int(at: Callable[[str], str], key: str, value: Any) -> int:
    lo, hi = LIMITS[key]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise OptimizeError(
            f"{at(key)}: {key} = {value!r} is not allowed: a whole number in [{lo}, {hi}]"
        )
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(label: str, spec: Any) -> tuple[float, float]:
    if (
        not isinstance(spec, list)
        or len(spec) != 2
        or not all(_number(v) and math.isfinite(v) for v in spec)
    ):
        raise OptimizeError(f"{label} = {spec!r}: a range is [low, high] (two numbers)")
    low, high = spec
    if not low < high:
        raise OptimizeError(f"{label} = {spec!r}: low must be below high")
    return float(low), float(high)


def _checked(where: str, key: str, name: str, value: Any) -> Any:
    """``value`` of parameter ``name`` checked; the error names the file and the key."""
    try:
        return check_value(name, value, label=key)
    except ParameterError as err:
        raise OptimizeError(f"{where}: {err}") from None


def _lever(label: str, key: str, rest: str, spec: Any, model: str, where: str) -> Lever:
    if model == "zdt1":
        low, high = _range(label, spec)
        if low < 0 or high > 1:
            raise OptimizeError(
                f"{label} = {spec!r} is outside the allowed range [0, 1] (zdt1's variables)"
            )
        return Lever(rest, low, high)
    name = parameter_name(key, where)
    if isinstance(spec, Mapping):
        values = spec.get("values")
        extra = [k for k in spec if k != "values"]
        if extra or not isinstance(values, list) or not values:
            raise OptimizeError(f"{label}: a choice is {{values = [...]}}, a non-empty list")
        checked = tuple(_checked(where, key, name, v) for v in values)
        if len(set(map(repr, checked))) != len(checked):
            raise OptimizeError(f"{label}: values {values!r} lists a value twice")
        return Lever(name, values=checked)
    low, high = _range(label, spec)
    integer = is_whole_number(name)
    f = field_of(name)
    if isinstance(f.default, bool) or f.metadata.get("choices"):
        raise OptimizeError(
            f"{label} = {spec!r}: {name} is not a number: list its values, {{values = [...]}}"
        )
    for v in (low, high):
        _checked(where, key, name, int(v) if integer else v)
    if integer and math.ceil(low) > math.floor(high):
        raise OptimizeError(f"{label} = {spec!r}: no whole number in the range")
    return Lever(name, low, high, integer=integer)


def _uncertain(
    label: str, key: str, rest: str, spec: Any, model: str, where: str
) -> tuple[str, float, float]:
    if isinstance(spec, Mapping):
        raise OptimizeError(
            f"{label}: an uncertainty is sampled from a range [low, high] (Latin hypercube) or "
            "from [samples] posterior, not from listed values"
        )
    low, high = _range(label, spec)
    if model == "zdt1":
        return rest, low, high
    name = parameter_name(key, where)
    integer = is_whole_number(name)
    for v in (low, high):
        _checked(where, key, name, int(v) if integer else v)
    return name, low, high


def _objectives(where: str, spec: Any, model: str) -> tuple[Objective, ...]:
    if spec is None:
        raise OptimizeError(
            f"{where}: no objectives: add [[objectives]] tables with metric = NAME "
            "(and channel, goal)"
        )
    if isinstance(spec, Mapping):
        spec = [spec]
    if not isinstance(spec, list) or not spec:
        raise OptimizeError(f"{where}: objectives must be [[objectives]] tables")
    known = list(ZDT1_METRICS) if model == "zdt1" else list(SUMMARY_METRICS)
    out = []
    for i, table in enumerate(spec):
        label = f"objectives[{i}]"
        if not isinstance(table, Mapping):
            raise OptimizeError(f"{where}: {label} must be a table (metric, channel, goal)")
        _unknown(where, "objectives", table, ("metric", "channel", "goal"))
        metric = table.get("metric")
        if metric not in known:
            raise OptimizeError(
                f"{where}: {label}.metric = {metric!r}: unknown metric"
                f"{_did_you_mean(str(metric), known)}; allowed: {', '.join(known)}"
            )
        channel = table.get("channel", ALL)
        if channel not in CHANNEL_NAMES:
            raise OptimizeError(
                f"{where}: {label}.channel = {channel!r} is not allowed: choose one of "
                f"{', '.join(CHANNEL_NAMES)}"
            )
        better = "lower" if model == "zdt1" else METRICS[metric].better
        default = {"higher": "max", "lower": "min"}.get(better)
        goal = table.get("goal", default)
        if goal is None:
            raise OptimizeError(
                f"{where}: {label}: {metric} is neither better high nor low: set goal = "
                '"max" or "min"'
            )
        if goal not in GOALS:
            raise OptimizeError(
                f"{where}: {label}.goal = {goal!r} is not allowed: choose one of {', '.join(GOALS)}"
            )
        out.append(Objective(metric, channel, goal))
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise OptimizeError(f"{where}: objectives: a metric and channel twice ({labels})")
    return tuple(out)


def _risk(where: str, spec: Any, at: Callable[[str], str]) -> tuple[str, float | None]:
    if not isinstance(spec, Mapping):
        raise OptimizeError(f"{where}: [risk] must be a table (measure, level)")
    _unknown(where, "risk", spec, ("measure", "level"))
    measure = spec.get("measure", "mean")
    if measure not in MEASURES:
        raise OptimizeError(
            f"{at('risk.measure')}: risk.measure = {measure!r} is not allowed: choose one of "
            f"{', '.join(MEASURES)}{_did_you_mean(str(measure), list(MEASURES))}"
        )
    level = spec.get("level")
    if measure != "cvar":
        if level is not None:
            raise OptimizeError(f'{at("risk.level")}: risk.level is for measure = "cvar"')
        return measure, None
    if not isinstance(level, int | float) or isinstance(level, bool) or not 0 < level <= 1:
        raise OptimizeError(
            f"{at('risk.level')}: risk.level = {level!r} is not allowed: CVaR needs the share "
            "of worst samples it averages, a number in (0, 1]"
        )
    return measure, float(level)


def _samples(path: Path, spec: Any, at: Callable[[str], str]) -> tuple[int, Path | None]:
    where = str(path)
    if not isinstance(spec, Mapping):
        raise OptimizeError(f"{where}: [samples] must be a table (count, posterior)")
    _unknown(where, "samples", spec, ("count", "posterior"))
    count = _int(at, "samples.count", spec.get("count", 8))
    posterior = spec.get("posterior")
    if posterior is None:
        return count, None
    if not isinstance(posterior, str) or not posterior:
        raise OptimizeError(f"{at('samples.posterior')}: samples.posterior must be a file name")
    file = Path(posterior)
    if not file.is_absolute() and at("samples.posterior") == where:
        file = Path(os.path.normpath(path.parent / file))  # relative to the file naming it
    if not file.is_file():
        raise OptimizeError(
            f"{at('samples.posterior')}: samples.posterior = {posterior!r}: file not found "
            f"({file}); a calibration's posterior_samples.csv"
        )
    return count, file


def _budget(
    where: str, spec: Any, at: Callable[[str], str], levers: Sequence[Lever], model: str
) -> Budget | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise OptimizeError(f"{where}: [budget] must be a table (spend, prices, limit, over)")
    if model == "zdt1":
        raise OptimizeError(f"{where}: [budget]: not for model 'zdt1'")
    _unknown(where, "budget", spec, ("spend", "prices", "limit", "over"))
    allowed = (*COST_KINDS, "brand_cost")
    spend = spec.get("spend", [])
    if not isinstance(spend, list):
        raise OptimizeError(f"{at('budget.spend')}: budget.spend must be a list of cost metrics")
    for m in spend:
        if m not in allowed:
            raise OptimizeError(
                f"{at('budget.spend')}: budget.spend: {m!r} is not a cost metric"
                f"{_did_you_mean(str(m), list(allowed))}; allowed: {', '.join(allowed)}"
            )
    prices = spec.get("prices", {})
    if not isinstance(prices, Mapping):
        raise OptimizeError(f"{where}: budget.prices must be a table of lever = RMB per unit")
    checked_prices = []
    for name, price in prices.items():
        try:
            kind = kind_of(name)
        except ParameterError as err:
            raise OptimizeError(f"{where}: budget.prices: {err}") from None
        f = field_of(name)
        numeric = _number(f.default) and not f.metadata.get("choices")
        if kind != "lever" or not numeric:
            raise OptimizeError(
                f"{where}: budget.prices.{name}: prices are for numeric levers, not {name}"
            )
        if not _number(price) or not math.isfinite(price) or price < 0:
            raise OptimizeError(
                f"{where}: budget.prices.{name} = {price!r} must be a number >= 0 (RMB per "
                "unit of the lever over the run)"
            )
        checked_prices.append((name, float(price)))
    if not spend and not checked_prices:
        raise OptimizeError(f"{where}: [budget] needs spend (cost metrics) or prices (levers)")
    limit = spec.get("limit")
    if (
        not isinstance(limit, int | float)
        or isinstance(limit, bool)
        or not math.isfinite(limit)
        or limit <= 0
    ):
        raise OptimizeError(
            f"{at('budget.limit')}: budget.limit = {limit!r} must be a number > 0 (RMB per "
            "1,000 consumers over the run)"
        )
    over = spec.get("over", "mean")
    if over not in BUDGET_OVER:
        raise OptimizeError(
            f"{at('budget.over')}: budget.over = {over!r} is not allowed: choose one of "
            f"{', '.join(BUDGET_OVER)}"
        )
    return Budget(tuple(spend), tuple(checked_prices), float(limit), over)


def _check_corners(opt: Optimization) -> None:
    """Every searched lever at each end of its range (the others held fixed), and all at
    their lows and all at their highs, must give valid parameters (rules across parameters:
    ``owners.count`` within the consumers, products a session within the streamer's pool)."""
    base = opt.base.params
    ends = [
        (lv, v) for lv in opt.levers for v in (lv.values or (lv.decode(lv.low), lv.decode(lv.high)))
    ]
    corners: list[tuple[str, dict[str, Any]]] = [
        (f"levers.{lv.name} = {v!r}", {lv.name: v}) for lv, v in ends
    ]
    low = {lv.name: lv.decode(lv.bounds[0]) for lv in opt.levers}
    high = {lv.name: lv.decode(lv.bounds[1]) for lv in opt.levers}
    corners += [("every lever at its low end", low), ("every lever at its high end", high)]
    for what, point in corners:
        try:
            base.with_overrides(point)
        except ParameterError as err:
            raise OptimizeError(
                f"{opt.path}: {what}: the parameters do not validate ({err}): narrow the range"
            ) from None


def _check_posterior(opt: Optimization, where: str, fixed: Mapping[str, str]) -> None:
    """The posterior's samples are readable and valid, draw no searched lever and no
    parameter the file itself sets (``fixed``: parameter name -> key)."""
    from sim.experiments.calibration import load_posterior_samples

    samples = load_posterior_samples(opt.posterior or "", f"{where}: samples.posterior")
    searched = {lv.name for lv in opt.levers}
    for name in samples.columns:
        if name in searched:
            raise OptimizeError(
                f"{where}: samples.posterior draws {name}, which the optimisation searches"
            )
        if name in fixed:
            raise OptimizeError(
                f"{where}: {fixed[name]} is set in the file but samples.posterior draws "
                f"{name}: remove one"
            )


# ----------------------------------------------------------------------------------------------
# Samples, candidates, runs
# ----------------------------------------------------------------------------------------------
def uncertainty_samples(opt: Optimization) -> tuple[list[dict[str, Any]], list[int]]:
    """The K samples every candidate meets: each one's parameter draw, and the seeds."""
    seeds = replicate_seeds(opt.seed, opt.samples)
    draws: list[dict[str, Any]] = [{} for _ in seeds]
    if opt.posterior is not None:
        from sim.experiments.calibration import load_posterior_samples
        from sim.experiments.experiment import posterior_draws

        posterior = load_posterior_samples(opt.posterior, "samples.posterior")
        draws = [dict(d) for d in posterior_draws(posterior, seeds)]
    if opt.uncertain:
        from scipy.stats import qmc

        from sim.experiments.calibration import typed

        rng = np.random.default_rng(opt.seed)
        u = qmc.LatinHypercube(d=len(opt.uncertain), seed=rng).random(opt.samples)
        for k, row in enumerate(u):
            for (name, low, high), x in zip(opt.uncertain, row, strict=True):
                value = low + float(x) * (high - low)
                if opt.model == "fishschool":
                    value = typed(name, value)
                draws[k][name] = value
    return draws, seeds


def candidate_key(levers: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(levers), sort_keys=True).encode()).hexdigest()[:16]


def identity(opt: Optimization) -> str:
    """What a stored run depends on besides its point and seed (as a sweep's keys)."""
    params = opt.base.params.to_dict()
    fixed = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return "|".join([fixed, opt.model, *sorted(opt.metrics), model_digest()])


def zdt1_run(task: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation of the ZDT1 verification model (``model = "zdt1"``): the rows of a run."""
    levers, shift = task["levers"], task["shift"]
    x = np.array([task["point"][name] for name in levers], dtype=float)
    f1 = float(x[0])
    g = 1.0 + 9.0 * float(x[1:].mean())
    f2 = g * (1.0 - math.sqrt(f1 / g)) + sum(float(task["point"][n]) for n in shift)
    rows = {"channel": [ALL, ALL], "metric": list(ZDT1_METRICS), "value": [f1, f2]}
    return {"rows": rows, "timings": {"build_s": 0.0, "simulate_s": 0.0}}


def _zdt1_batch(tasks: Sequence[Mapping[str, Any]]) -> list[tuple[dict | None, str | None]]:
    out: list[tuple[dict | None, str | None]] = []
    for task in tasks:
        try:
            out.append((zdt1_run(task), None))
        except Exception as err:
            out.append((None, f"{type(err).__name__}: {err}"))
    return out


def run_tasks(
    tasks: Sequence[Mapping[str, Any]], executor: Executor | None
) -> Iterator[tuple[Mapping[str, Any], dict[str, Any] | None, Exception | None]]:
    """Run tasks as :func:`sim.experiments.engine.run_many` does (the engine's own for the
    model; for the verification model zdt1, in four batches a worker on the same executor)."""
    if not tasks:
        return
    if tasks[0]["model"] in MODELS:
        yield from run_many(tasks, executor)
        return
    if executor is None:
        for task, (result, error) in zip(tasks, _zdt1_batch(tasks), strict=True):
            yield task, result, RuntimeError(error) if error else None
        return
    size = max(1, math.ceil(len(tasks) / (4 * default_workers())))
    futures: dict[Future, Sequence[Mapping[str, Any]]] = {}
    for i in range(0, len(tasks), size):
        chunk = tasks[i : i + size]
        futures[executor.submit(_zdt1_batch, chunk)] = chunk
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when="FIRST_COMPLETED")
            for fut in done:
                for task, (result, error) in zip(futures[fut], fut.result(), strict=True):
                    yield task, result, RuntimeError(error) if error else None
    finally:
        for fut in pending:
            fut.cancel()


# ----------------------------------------------------------------------------------------------
# Risk
# ----------------------------------------------------------------------------------------------
def cvar(losses: np.ndarray, level: float) -> np.ndarray:
    """Conditional value at risk of each row of ``losses`` (candidates x samples): the mean of
    its worst (largest) ceil(level x K) losses.

    >>> cvar(np.array([[1.0, 4.0, 2.0, 3.0]]), 0.5)
    array([3.5])
    """
    k = losses.shape[1]
    m = max(1, math.ceil(level * k - 1e-9))
    return np.sort(losses, axis=1)[:, k - m :].mean(axis=1)


def regret(losses: np.ndarray) -> np.ndarray:
    """Regret of each candidate (row) on each sample (column): its loss minus the smallest
    loss of any candidate on that sample; 0 for the best of each sample, positive otherwise.
    A missing loss (NaN) has no regret (NaN) and is never the best.

    >>> regret(np.array([[1.0, 5.0], [2.0, 3.0]]))
    array([[0., 2.],
           [1., 0.]])
    """
    if losses.size == 0:
        return losses.copy()
    finite = np.where(np.isnan(losses), np.inf, losses)
    return losses - finite.min(axis=0, keepdims=True)


def risk(losses: np.ndarray, measure: str, level: float | None = None) -> np.ndarray:
    """One loss per candidate (row) from its losses over the samples: the mean, the CVaR at
    ``level`` or the maximum regret against the rows given. A row with a missing loss gets
    :data:`MISSING_LOSS`."""
    missing = np.isnan(losses).any(axis=1)
    if measure == "mean":
        out = np.nanmean(np.where(missing[:, None], 0.0, losses), axis=1)
    elif measure == "cvar":
        out = cvar(np.where(missing[:, None], 0.0, losses), level or 1.0)
    elif measure == "regret":
        out = np.nanmax(np.where(missing[:, None], 0.0, regret(losses)), axis=1)
    else:
        raise ValueError(f"measure = {measure!r} is not allowed: choose one of {MEASURES}")
    return np.where(missing, MISSING_LOSS, out)


def non_dominated(f: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``f`` (minimised) that no other row dominates.

    >>> non_dominated(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0]])).tolist()
    [True, True, False, True]
    """
    n = len(f)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        le = (f <= f[i]).all(axis=1)
        lt = (f < f[i]).any(axis=1)
        if (le & lt).any():
            keep[i] = False
    return keep


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    id: int
    key: str
    levers: dict[str, Any]
    generation: int


@dataclass
class Evaluator:
    """Runs candidates on the samples, storing every run; holds what is known so far."""

    opt: Optimization
    out: Path
    executor: Executor | None
    draws: list[dict[str, Any]]
    seeds: list[int]
    progress: Callable[[int, int, int], None] | None = None
    archive: dict[str, Candidate] = field(default_factory=dict)
    rows: dict[str, dict[str, list]] = field(default_factory=dict)  # run key -> rows
    computed: int = 0
    reused: int = 0
    asked: int = 0
    model_s: float = 0.0

    def __post_init__(self) -> None:
        self.identity = identity(self.opt)
        self.params = self.opt.base.params.to_dict()
        self.runs = self.out / "runs"
        self._keys: dict[tuple[str, int], str] = {}

    def candidates(self, x: np.ndarray, generation: int) -> list[Candidate]:
        """The candidates of search variables ``x`` (one row each), entered in the archive."""
        out = []
        for row in np.atleast_2d(x):
            levers = {lv.name: lv.decode(v) for lv, v in zip(self.opt.levers, row, strict=True)}
            key = candidate_key(levers)
            if key not in self.archive:
                self.archive[key] = Candidate(len(self.archive), key, levers, generation)
            out.append(self.archive[key])
        return out

    def key(self, cand: Candidate, k: int) -> str:
        """The run key of candidate ``cand`` on sample ``k``."""
        found = self._keys.get((cand.key, k))
        if found is None:
            found = self._keys[(cand.key, k)] = self.task(cand, k)["key"]
        return found

    def task(self, cand: Candidate, k: int) -> dict[str, Any]:
        point = {**cand.levers, **self.draws[k]}
        task: dict[str, Any] = {
            "key": run_key(self.identity, point, self.seeds[k]),
            "point_id": cand.id,
            "replicate": k,
            "seed": self.seeds[k],
            "point": point,
            "params": self.params,
            "tables": ["summary"],
            "metrics": list(self.opt.metrics),
            "model": self.opt.model,
            "form": "rows",
        }
        if self.opt.model == "zdt1":
            task["levers"] = [lv.name for lv in self.opt.levers]
            task["shift"] = [name for name, _, _ in self.opt.uncertain]
        return task

    def evaluate(self, cands: Sequence[Candidate]) -> tuple[int, int]:
        """Make sure every candidate has its runs on every sample; (computed, reused)."""
        todo = [self.task(c, k) for c in cands for k in range(len(self.seeds))]
        self.asked += len(todo)
        unique = list({t["key"]: t for t in todo if t["key"] not in self.rows}.values())
        found = read_records(self.runs, unique, remove_bad=True)
        self.rows.update(found)
        pending = [t for t in unique if t["key"] not in found]
        reused = len(todo) - len(pending)
        self.reused += reused
        total = self.opt.planned_runs
        done = self.asked - len(pending)
        if self.progress:
            self.progress(done, total, self.reused)
        writer = _RecordWriter(self.runs)
        failed: list[tuple[Mapping[str, Any], Exception]] = []
        finished = False
        try:
            for task, result, error in run_tasks(pending, self.executor):
                err_path = self.runs / f"{task['key']}.error.json"
                if error is None:
                    assert result is not None
                    self.model_s += sum(result["timings"].get(k, 0.0) for k in MODEL_TIMINGS)
                    record = {
                        "key": task["key"],
                        "point_id": task["point_id"],
                        "replicate": task["replicate"],
                        "seed": task["seed"],
                        "point": task["point"],
                        "rows": {c: result["rows"][c] for c in ROW_COLUMNS},
                    }
                    text = json.dumps(record)
                    self.rows[task["key"]] = json.loads(text)["rows"]  # as a rerun reads it
                    writer.submit(self.runs / f"{task['key']}.json", text, remove=err_path)
                    self.computed += 1
                else:
                    record = {
                        "key": task["key"],
                        "point": task["point"],
                        "seed": task["seed"],
                        "replicate": task["replicate"],
                        "error": f"{type(error).__name__}: {error}",
                        "traceback": "".join(traceback.format_exception(error)),
                    }
                    writer.submit(err_path, json.dumps(record, indent=2, default=str))
                    failed.append((task, error))
                done += 1
                if self.progress:
                    self.progress(done, total, self.reused)
            finished = True
        finally:
            writer.close(check=finished)
        if failed:
            task, error = failed[0]
            raise RunFailed(
                f"{len(failed)} run(s) failed, the first at {task['point']} (seed "
                f"{task['seed']}): {type(error).__name__}: {error}; records in "
                f"{self.runs}/*.error.json"
            )
        return len(pending), reused

    def value(self, cand: Candidate, k: int, metric: str, channel: str) -> float:
        rows = self.rows[self.key(cand, k)]
        for c, m, v in zip(rows["channel"], rows["metric"], rows["value"], strict=True):
            if c == channel and m == metric:
                return float("nan") if v is None else float(v)
        return float("nan")

    def values(self, cands: Sequence[Candidate], metric: str, channel: str) -> np.ndarray:
        """candidates x samples."""
        return np.array(
            [[self.value(c, k, metric, channel) for k in range(len(self.seeds))] for c in cands]
        ).reshape(len(cands), len(self.seeds))

    def losses(self, cands: Sequence[Candidate]) -> np.ndarray:
        """candidates x samples x objectives, larger worse."""
        return np.stack(
            [o.sign * self.values(cands, o.metric, o.channel) for o in self.opt.objectives],
            axis=2,
        ).reshape(len(cands), len(self.seeds), len(self.opt.objectives))

    def spend(self, cands: Sequence[Candidate]) -> np.ndarray:
        """candidates x samples: the budget's spend, RMB per 1,000 consumers (NaN: none)."""
        budget = self.opt.budget
        out = np.full((len(cands), len(self.seeds)), np.nan)
        if budget is None:
            return out
        total = np.zeros_like(out)
        for m in budget.spend:
            total += np.nan_to_num(self.values(cands, m, ALL))
        base = self.opt.base.params
        for name, price in budget.prices:
            section, _, key = name.partition(".")
            fixed = getattr(getattr(base, section), key)
            total += np.array([[price * float(c.levers.get(name, fixed))] for c in cands])
        return total * 1000.0 / base.world.consumers

    def objectives(
        self, cands: Sequence[Candidate], reference: Sequence[Candidate]
    ) -> tuple[np.ndarray, np.ndarray]:
        """F (candidates x objectives, minimised) and G (candidates x 1, <= 0 feasible):
        the risk measure of each objective's losses (a regret against the best feasible mix
        of ``reference`` on each sample, or of all of them when none is feasible), the
        budget's excess over its limit (a share of it) or, when an objective value is
        missing, the number of missing values."""
        losses = self.losses(cands)
        n = len(cands)
        f = np.empty((n, len(self.opt.objectives)))
        if self.opt.measure == "regret":
            ref = self.losses(reference)
            feasible = self.constraint(reference, ref) <= 0
            if feasible.any():
                ref = ref[feasible]
            for j in range(len(self.opt.objectives)):
                best = np.where(np.isnan(ref[:, :, j]), np.inf, ref[:, :, j]).min(axis=0)
                reg = losses[:, :, j] - best
                missing = np.isnan(reg).any(axis=1)
                f[:, j] = np.where(missing, MISSING_LOSS, np.nanmax(np.nan_to_num(reg), axis=1))
        else:
            for j in range(len(self.opt.objectives)):
                f[:, j] = risk(losses[:, :, j], self.opt.measure, self.opt.level)
        return f, self.constraint(cands, losses).reshape(n, 1)

    def constraint(self, cands: Sequence[Candidate], losses: np.ndarray) -> np.ndarray:
        """G of each candidate (<= 0: feasible): the number of its missing objective values,
        or, with none missing, how far its spend is over the budget (a share of the limit)."""
        g = np.isnan(losses).any(axis=2).sum(axis=1).astype(float)
        if self.opt.budget is not None:
            spend = self.spend(cands)
            used = spend.mean(axis=1) if self.opt.budget.over == "mean" else spend.max(axis=1)
            excess = (used - self.opt.budget.limit) / self.opt.budget.limit
            g = np.where(g > 0, g, excess)
        return g


def _problem(opt: Optimization):
    from pymoo.core.problem import Problem

    bounds = np.array([lv.bounds for lv in opt.levers], dtype=float)
    return Problem(
        n_var=len(opt.levers),
        n_obj=len(opt.objectives),
        n_ieq_constr=1,
        xl=bounds[:, 0],
        xu=bounds[:, 1],
    )


def _algorithm(opt: Optimization):
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.operators.sampling.lhs import LHS

    algorithm = NSGA2(pop_size=opt.population, sampling=LHS(), eliminate_duplicates=True)
    algorithm.setup(
        _problem(opt), termination=("n_gen", opt.generations), seed=opt.search_seed, verbose=False
    )
    return algorithm


@dataclass
class OptimizationResult:
    """Everything an optimisation found; the tables :func:`write_results` writes."""

    opt: Optimization
    samples: pd.DataFrame
    evaluations: pd.DataFrame
    candidates: pd.DataFrame
    pareto: pd.DataFrame
    flips: pd.DataFrame
    generations: pd.DataFrame
    recommended: int | None
    notes: list[str]
    timings: dict[str, Any]


def run_optimization(
    opt: Optimization,
    out: str | Path,
    executor: Executor | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> OptimizationResult:
    """Run (or resume) the search into ``out`` and analyse it; ``executor=None`` runs here.

    ``progress(done, total, reused)`` as runs finish (total: the planned upper bound),
    ``log(line)`` once a generation. Refuses (:class:`OptimizeError`) a folder that is not this
    optimisation's. :class:`RunFailed` when a run raises (the others of its generation are
    stored first). The result tables are written by :func:`write_results`.
    """
    out = Path(out)
    check_out(opt, out)
    started = now()
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(opt, out, started)
        (out / "runs").mkdir(exist_ok=True)
    except OSError as err:
        raise OptimizeError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    for folder in (out, out / "runs"):
        atomic.remove_leftovers(folder)
    draws, seeds = uncertainty_samples(opt)
    ev = Evaluator(opt, out, executor, draws, seeds, progress)
    algorithm = _algorithm(opt)
    t0 = time.perf_counter()
    history = []
    generation = 0
    while algorithm.has_next():
        generation += 1
        t_gen = time.perf_counter()
        pop = algorithm.ask()
        cands = ev.candidates(pop.get("X"), generation)
        computed, reused = ev.evaluate(cands)
        reference = list(ev.archive.values())
        f, g = ev.objectives(cands, reference)
        if opt.measure == "regret" and algorithm.pop is not None and len(algorithm.pop):
            # The survivors' regrets against every mix found so far: like with like.
            kept = ev.candidates(algorithm.pop.get("X"), generation)
            f_kept, g_kept = ev.objectives(kept, reference)
            algorithm.pop.set("F", f_kept, "G", g_kept)
        pop.set("F", f, "G", g)
        algorithm.tell(infills=pop)
        survivors = ev.candidates(algorithm.pop.get("X"), generation)
        fs, gs = ev.objectives(survivors, reference)
        feasible = gs[:, 0] <= 0
        front = int(non_dominated(fs[feasible]).sum()) if feasible.any() else 0
        row = {
            "generation": generation,
            "candidates": len(cands),
            "new_candidates": sum(c.generation == generation for c in cands),
            "runs_computed": computed,
            "runs_reused": reused,
            "feasible": int((g[:, 0] <= 0).sum()),
            "front": front,
            "wall_s": round(time.perf_counter() - t_gen, 3),
        }
        for j, o in enumerate(opt.objectives):
            col = fs[feasible, j] if feasible.any() else fs[:, j]
            row[f"best_{opt.measure}.{o.label}"] = _shown(float(col.min()), o, opt.measure)
        history.append(row)
        if log:
            o = opt.objectives[0]
            log(
                f"generation {generation}/{opt.generations}: {len(cands)} mixes, "
                f"{computed} runs computed, {reused} reused, in {row['wall_s']:.1f}s; "
                f"feasible front of {front}; best {opt.measure} of {o.label}: "
                f"{_fmt(row[f'best_{opt.measure}.{o.label}'])}"
            )
    result = analyse(ev, pd.DataFrame(history))
    wall = time.perf_counter() - t0
    result.timings.update(
        {
            "started": started,
            "wall_s": round(wall, 3),
            "runs_planned": opt.planned_runs,
            "runs_computed": ev.computed,
            "runs_reused": ev.reused,
            "runs_per_minute": round(60 * ev.computed / wall, 2) if wall > 0 else None,
            "candidates": len(ev.archive),
            "candidates_per_minute": round(60 * ev.computed / len(seeds) / wall, 2)
            if wall > 0
            else None,
            "model_s": round(ev.model_s, 3),
            "workers": _workers(executor),
        }
    )
    return result


def _workers(executor: Executor | None) -> int:
    """How many runs the executor runs at once (a Dask cluster's threads, not this machine's
    cores): the engine's own count."""
    return 1 if executor is None else _Slots(executor).count()


def _shown(loss: float, o: Objective, measure: str) -> float:
    """A risk value in the metric's own units: a regret as it is, a mean or CVaR of a
    maximised objective with its sign back."""
    if loss >= MISSING_LOSS:
        return float("nan")
    return loss if measure == "regret" or o.goal == "min" else -loss


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:,.4g}"


# ----------------------------------------------------------------------------------------------
# What it found
# ----------------------------------------------------------------------------------------------
def robust_choice(
    regrets: np.ndarray, means: np.ndarray, options: np.ndarray, goal: str
) -> int | None:
    """Index (into the rows) of the option with the smallest maximum regret on the samples
    (columns) of ``regrets``; ties: the better mean. None without options."""
    rows = np.flatnonzero(options)
    if rows.size == 0:
        return None
    worst = np.nanmax(regrets[rows], axis=1)
    better = -means[rows] if goal == "max" else means[rows]
    order = np.lexsort((rows, better, np.round(worst, 12)))
    return int(rows[order[0]])


def analyse(ev: Evaluator, generations: pd.DataFrame) -> OptimizationResult:
    """The tables of an optimisation from its evaluator (every candidate evaluated)."""
    with warnings.catch_warnings():  # all-NaN rows: the regrets of mixes outside the pool
        warnings.simplefilter("ignore", RuntimeWarning)
        return _analyse(ev, generations)


def _analyse(ev: Evaluator, generations: pd.DataFrame) -> OptimizationResult:
    opt = ev.opt
    cands = list(ev.archive.values())
    k = len(ev.seeds)
    notes: list[str] = []
    losses = ev.losses(cands)
    f, g = ev.objectives(cands, cands)
    feasible = g[:, 0] <= 0
    pool = feasible if feasible.any() else ~np.isnan(losses).any(axis=(1, 2))
    if not feasible.any():
        notes.append(
            "No mix evaluated keeps within the budget (or has every objective value): the "
            "Pareto set and the recommendation are over every mix with all its values."
        )
    front = np.zeros(len(cands), dtype=bool)
    if pool.any():
        front[np.flatnonzero(pool)[non_dominated(f[pool])]] = True
    # Regret against the best mix of each sample among the pool (the feasible mixes).
    regrets = np.full_like(losses, np.nan)
    for j in range(len(opt.objectives)):
        regrets[pool, :, j] = regret(losses[pool, :, j])
    primary = opt.objectives[0]
    means = np.nanmean(losses[:, :, 0] * primary.sign, axis=1) if k else np.zeros(len(cands))
    chosen = robust_choice(regrets[:, :, 0], means, front, primary.goal)
    spend = ev.spend(cands)
    lever_names = [lv.name for lv in opt.levers]
    # candidates.csv
    table: dict[str, Any] = {
        "candidate": [c.id for c in cands],
        "generation": [c.generation for c in cands],
    }
    for name in lever_names:
        table[name] = [c.levers[name] for c in cands]
    for j, o in enumerate(opt.objectives):
        values = losses[:, :, j] * o.sign
        table[f"mean.{o.label}"] = np.nanmean(values, axis=1)
        if opt.measure != "mean":
            table[f"{opt.measure}.{o.label}"] = [_shown(x, o, opt.measure) for x in f[:, j]]
        table[f"max_regret.{o.label}"] = np.nanmax(regrets[:, :, j], axis=1)
    if opt.budget is not None:
        table["spend_per_1000"] = spend.mean(axis=1)
        table["spend_per_1000_max"] = spend.max(axis=1)
    table["missing_values"] = np.isnan(losses).any(axis=2).sum(axis=1)
    table["feasible"] = feasible
    table["pareto"] = front
    table["recommended"] = [i == chosen for i in range(len(cands))]
    with np.errstate(all="ignore"):
        candidates = pd.DataFrame(table)
    sort_col = (
        f"{opt.measure}.{primary.label}" if opt.measure != "mean" else f"mean.{primary.label}"
    )
    pareto = candidates[candidates.pareto].sort_values(
        sort_col, ascending=primary.goal == "min" or opt.measure == "regret", kind="stable"
    )
    # samples.csv
    samples = pd.DataFrame({"sample": range(k), "seed": ev.seeds, **_draw_columns(ev.draws)})
    rec_id = cands[chosen].id if chosen is not None else None
    if chosen is not None:
        values = losses[:, :, 0] * primary.sign
        ref = np.where(pool[:, None], losses[:, :, 0], np.inf)
        best = ref.argmin(axis=0)
        samples["best_candidate"] = [cands[i].id for i in best]
        samples[f"best.{primary.label}"] = values[best, range(k)]
        samples[f"recommended.{primary.label}"] = values[chosen]
        samples[f"regret.{primary.label}"] = regrets[chosen, :, 0]
    # evaluations.csv
    evaluations = _evaluations(ev, cands, losses, regrets, spend)
    flips = _flips(ev, cands, samples, regrets[:, :, 0], means, front, chosen, notes)
    return OptimizationResult(
        opt=opt,
        samples=samples,
        evaluations=evaluations,
        candidates=candidates,
        pareto=pareto.reset_index(drop=True),
        flips=flips,
        generations=generations,
        recommended=rec_id,
        notes=notes,
        timings={},
    )


def _draw_columns(draws: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    names = list(dict.fromkeys(n for d in draws for n in d))
    return {n: [d.get(n) for d in draws] for n in names}


def _evaluations(
    ev: Evaluator,
    cands: Sequence[Candidate],
    losses: np.ndarray,
    regrets: np.ndarray,
    spend: np.ndarray,
) -> pd.DataFrame:
    opt, k = ev.opt, len(ev.seeds)
    cols: dict[str, list] = {"candidate": [], "generation": [], "sample": [], "seed": []}
    for lv in opt.levers:
        cols[lv.name] = []
    extra = [
        m for m in opt.metrics if m not in {o.metric for o in opt.objectives if o.channel == ALL}
    ]
    for o in opt.objectives:
        cols[o.label] = []
        cols[f"regret.{o.label}"] = []
    for m in extra:
        cols[f"{m}.{ALL}"] = []
    if opt.budget is not None:
        cols["spend_per_1000"] = []
    for i, c in enumerate(cands):
        for s in range(k):
            cols["candidate"].append(c.id)
            cols["generation"].append(c.generation)
            cols["sample"].append(s)
            cols["seed"].append(ev.seeds[s])
            for lv in opt.levers:
                cols[lv.name].append(c.levers[lv.name])
            for j, o in enumerate(opt.objectives):
                cols[o.label].append(o.sign * losses[i, s, j])
                cols[f"regret.{o.label}"].append(regrets[i, s, j])
            for m in extra:
                cols[f"{m}.{ALL}"].append(ev.value(c, s, m, ALL))
            if opt.budget is not None:
                cols["spend_per_1000"].append(spend[i, s])
    return pd.DataFrame(cols)


def _flips(
    ev: Evaluator,
    cands: Sequence[Candidate],
    samples: pd.DataFrame,
    regrets: np.ndarray,
    means: np.ndarray,
    front: np.ndarray,
    chosen: int | None,
    notes: list[str],
) -> pd.DataFrame:
    """For each uncertain parameter that varies over the samples: the robust mix (smallest
    maximum regret on the primary objective among the Pareto set) on the samples at or below
    its median and on those above, whether the two differ, how much maximum regret a half's
    own robust mix saves there against the recommended mix (the larger of the two halves: 0
    when neither flips; a flip that saves little is noise), and the Spearman correlation of
    the parameter with the recommended mix's regret. Flips come first, the largest savings
    first."""
    from scipy.stats import spearmanr

    columns = [
        "parameter",
        "median",
        "samples_low",
        "robust_low",
        "samples_high",
        "robust_high",
        "flips",
        "regret_saved",
        "spearman_regret",
    ]
    k = len(ev.seeds)
    names = [n for n in _draw_columns(ev.draws) if samples[n].nunique() > 1]
    if chosen is None or not names:
        return pd.DataFrame(columns=columns)
    if k < 4:
        notes.append(f"{k} samples are too few to split by each uncertain parameter (4 needed).")
        return pd.DataFrame(columns=columns)
    goal = ev.opt.objectives[0].goal
    rows = []
    for name in names:
        x = samples[name].to_numpy(dtype=float)
        median = float(np.median(x))
        low = x <= median
        if low.all() or not low.any():
            continue
        picks: list[int | None] = []
        saved = 0.0
        for half in (low, ~low):
            # A sample's regret is against its own best mix: the half's are its columns.
            i = robust_choice(regrets[:, half], means, front, goal)
            picks.append(cands[i].id if i is not None else None)
            if i is not None:
                ours = float(np.nanmax(regrets[chosen, half]))
                saved = max(saved, ours - float(np.nanmax(regrets[i, half])))
        with np.errstate(all="ignore"):
            rho = spearmanr(x, regrets[chosen]).statistic if np.ptp(regrets[chosen]) > 0 else 0.0
        rows.append(
            {
                "parameter": name,
                "median": median,
                "samples_low": int(low.sum()),
                "robust_low": picks[0],
                "samples_high": int((~low).sum()),
                "robust_high": picks[1],
                "flips": picks[0] != picks[1],
                "regret_saved": saved,
                "spearman_regret": float(rho) if rho == rho else 0.0,
            }
        )
    df = pd.DataFrame(rows, columns=columns)
    if not df.empty:
        order = np.lexsort(
            (
                -df.spearman_regret.abs().to_numpy(),
                -df.regret_saved.to_numpy(),
                ~df.flips.to_numpy(),
            )
        )
        df = df.iloc[order].reset_index(drop=True)
    return df


# ----------------------------------------------------------------------------------------------
# The folder
# ----------------------------------------------------------------------------------------------
RESULT_FILES = (
    "samples.csv",
    "evaluations.csv",
    "candidates.csv",
    "pareto.csv",
    "flips.csv",
    "generations.csv",
)


def _opt_path(opt: Optimization) -> str:
    return str(opt.path.resolve())


def check_out(opt: Optimization, out: str | Path) -> None:
    """Refuse (:class:`OptimizeError`) an output folder that is not this optimisation's: only
    a missing or empty folder, or one whose manifest is this optimisation's (the same text,
    or the same name and file: an edited file resumes), is used."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise OptimizeError(f"--out {out} is a file, not a folder: choose another --out")
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        try:  # (the manifest comes first: a runs/ without one holds no record)
            leftovers = all(_leftover(p) for p in out.iterdir())
        except OSError as err:
            raise OptimizeError(f"--out {out}: cannot read the folder ({err.strerror})") from None
        if leftovers:
            return
        raise OptimizeError(
            f"--out {out} holds other files and no optimisation manifest: an optimisation "
            "writes only into a new or empty folder or its own folder; choose another --out"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and manifest.get("content") == "optimization":
        if manifest.get("sha256") == opt.sha256:
            return
        if manifest.get("name") == opt.name and manifest.get("opt_path") == _opt_path(opt):
            return
        what = f"optimisation '{manifest.get('name')}' (from {manifest.get('opt_file')})"
    elif isinstance(manifest, dict):
        what = f"other results ({manifest.get('content') or 'a manifest.json'})"
    else:
        what = "an unreadable manifest.json"
    raise OptimizeError(
        f"--out {out} holds {what}, not optimisation '{opt.name}': choose another --out"
    )


def describe(opt: Optimization) -> dict[str, Any]:
    """The optimisation's settings, for the manifest."""
    draws, seeds = uncertainty_samples(opt)
    return {
        "model": opt.model,
        "levers": [
            {
                "name": lv.name,
                "low": None if lv.is_choice else lv.low,
                "high": None if lv.is_choice else lv.high,
                "values": list(lv.values) if lv.values is not None else None,
                "integer": lv.integer,
            }
            for lv in opt.levers
        ],
        "uncertain_ranges": [{"name": n, "low": lo, "high": hi} for n, lo, hi in opt.uncertain],
        "objectives": [dataclasses.asdict(o) for o in opt.objectives],
        "risk": {"measure": opt.measure, "level": opt.level},
        "samples": {
            "count": opt.samples,
            "posterior": str(opt.posterior) if opt.posterior else None,
            "seed": opt.seed,
            "seeds": seeds,
            "draws": draws,
        },
        "budget": dataclasses.asdict(opt.budget) if opt.budget else None,
        "search": {
            "algorithm": "nsga2",
            "population": opt.population,
            "generations": opt.generations,
            "seed": opt.search_seed,
            "planned_runs": opt.planned_runs,
        },
        "metrics": list(opt.metrics),
    }


def write_manifest(
    opt: Optimization,
    out: Path,
    started: str,
    result: OptimizationResult | None = None,
    command: list[str] | None = None,
    folder: Path | None = None,
) -> None:
    """The manifest: written when the search starts (``finished`` empty) and with the result
    (into ``folder``, the staging folder of the result files, when given)."""
    record = provenance(command, started)
    if result is None:
        record["finished"] = None  # still running, or killed: a rerun resumes
    manifest = {
        "tool": "fishschool",
        "content": "optimization",
        "name": opt.name,
        "question": opt.question,
        "opt_file": str(opt.path),
        "opt_path": _opt_path(opt),
        "opt_text": opt.text,
        "overrides": list(opt.overrides),
        "sha256": opt.sha256,
        **describe(opt),
        "base": {
            "name": opt.base.name,
            "sha256": opt.base.sha256,
            "parameters": opt.base.params.to_dict(),
        },
        "model_digest": model_digest(),
        **record,
    }
    if result is not None:
        manifest["recommended"] = result.recommended
        manifest["pareto_size"] = len(result.pareto)
        manifest["timings"] = result.timings
        manifest["notes"] = result.notes
    text = json.dumps(manifest, indent=2, default=_json_default)
    atomic.write_text((folder or out) / "manifest.json", text)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def write_results(
    result: OptimizationResult,
    out: str | Path,
    command: list[str] | None = None,
    extra: Callable[[OptimizationResult, Path], Sequence[str]] | None = None,
) -> list[Path]:
    """Write the result tables, the finished manifest and whatever ``extra(result, folder)``
    draws (returning the names it wrote: a figure, a report) into ``out``, all replacing the
    previous ones once all are written (:func:`sim.experiments.atomic.replaced_entries`)."""
    out = Path(out)
    frames = (
        result.samples,
        result.evaluations,
        result.candidates,
        result.pareto,
        result.flips,
        result.generations,
    )
    tables = dict(zip(RESULT_FILES, frames, strict=True))
    with atomic.replaced_entries(out, ()) as stage:
        names = list(tables)
        for name, df in tables.items():
            df.to_csv(stage / name, index=False)
        if extra is not None:
            names += list(extra(result, stage))
        write_manifest(
            result.opt,
            out,
            result.timings.get("started") or now(),
            result,
            command,
            folder=stage,
        )
        names.append("manifest.json")
        for name in names:
            (stage / name).replace(out / name)
        atomic.fsync_dir(out)
    return [out / n for n in names]


def largest_world(opt: Optimization) -> Params:
    """The base with every numeric searched lever at its high end (for the memory check)."""
    high = {lv.name: lv.decode(lv.high) for lv in opt.levers if not lv.is_choice}
    try:
        return opt.base.params.with_overrides(high)
    except ParameterError:
        return opt.base.params
