"""Batch parameter sweeps: many points, any executor, nothing lost.

A sweep file is a scenario file (same grammar, :mod:`sim.experiments.scenario`) that gives
some levers and uncertainties a range or a list of values instead of one value, plus the keys
that say how to sample them::

    # Question: where does the owners' low return rate stop holding?
    extends = "../owners.toml"    # a scenario file (relative to this file) or a shipped name
    design = "sobol"              # grid | random | lhs | sobol | morris
    samples = 64                  # sobol: N (a power of 2, N x (D + 2) points); morris:
                                  # trajectories; random / lhs: points; grid: levels per range
    replicates = 2
    seed = 1
    metrics = ["return_rate", "visit_conversion", "brand_profit"]

    [world]                       # held fixed, as in any scenario
    consumers = 10_000
    days = 30

    [levers]                      # one value: fixed; [low, high] or {values = [...]}: varied
    owners.count = 50
    platform.selection_strictness = [0.0, 0.8]
    channels.streamer = {values = [true, false]}

    [uncertainties]
    returns.misfit = [1.0, 4.0]

Each run is a task of the run engine (:func:`sim.experiments.engine.run_one`: scenario
parameters, point, replicate seed), handed to a ``concurrent.futures.Executor``: local
processes by default, or a Dask cluster's executor, with identical numbers either way.
Replicate r of every point uses the same seed (common random numbers across points). Short
runs travel in batches of about a second (:func:`sim.experiments.engine.run_many`), the
scenario's parameters once per batch, and only the summary rows a record keeps come back.

Nothing is lost: each run's result is written atomically and durably
(:mod:`sim.experiments.atomic`) to ``runs/KEY.json`` as soon as its batch is back (a kill
loses at most the batches in flight), where KEY hashes the parameters held fixed, the model,
the metrics, the source code of the ``sim`` package (:func:`model_digest`: a changed model
never reuses old runs), the point and the replicate seed; a rerun of the same
sweep skips the keys already there, so a sweep killed at any moment resumes without recomputing
finished runs. Each record is checked when read: a damaged one (empty, truncated, not a record)
is said on stderr and recomputed. Temporary files left by a killed sweep are removed when it
resumes. A run that raises is recorded in ``runs/KEY.error.json`` with its parameters and
traceback; the sweep goes on, reports failures at the end (and retries them on the next run).
The whole sweep is gathered into ``sweep.parquet``: one row per run, channel and metric, with
the parameters as columns.

A sweep writes only into an empty folder or a folder of the same sweep (by its manifest), and
refuses plans above :data:`MAX_RUNS` runs unless ``allow_large`` is given (``--yes``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import sim
from sim.experiments import atomic
from sim.experiments.engine import MODELS, ROW_COLUMNS, run_many
from sim.experiments.provenance import now, provenance
from sim.experiments.scenario import (
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
from sim.world.metrics import SUMMARY_METRICS
from sim.world.params import (
    ParameterError,
    Params,
    _did_you_mean,
    check_value,
    is_whole_number,
    read_toml,
)

DESIGNS = ("grid", "random", "lhs", "sobol", "morris")
MAX_RUNS = 1_000_000  # a larger plan needs allow_large=True (--yes)
RECORD_KEYS = ("key", "point_id", "replicate", "seed", "point", "rows")
LEFTOVER_SUFFIXES = (atomic.TMP_SUFFIX, atomic.PARTIAL_SUFFIX)
MODEL_TIMINGS = ("build_s", "simulate_s", "collect_s")  # a run's seconds in the model


class SweepError(ParameterError):
    """A sweep cannot start: its output folder is not its own, or its plan is too large."""


# ----------------------------------------------------------------------------------------------
# The sweep file
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    """One varied parameter: a numeric range or a list of values."""

    name: str  # dotted parameter name
    kind: str  # lever or uncertainty
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.values is None

    @property
    def options(self) -> tuple[Any, ...]:
        """The listed values (empty for a range)."""
        return self.values or ()

    @property
    def bounds(self) -> tuple[float, float]:
        """[low, high] of a range."""
        assert self.low is not None and self.high is not None, f"{self.name} is not a range"
        return self.low, self.high


@dataclass(frozen=True)
class Sweep:
    name: str
    question: str
    path: Path
    text: str
    base: Scenario
    design: str
    samples: int
    levels: int
    replicates: int
    seed: int
    metrics: tuple[str, ...]
    factors: tuple[Factor, ...]
    model: str = "fishschool"

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(self.text.encode())
        h.update(self.base.sha256.encode())
        return h.hexdigest()

    def problem(self) -> dict[str, Any]:
        """The SALib problem of the numeric ranges."""
        return {
            "num_vars": len(self.factors),
            "names": [f.name for f in self.factors],
            "bounds": [[f.low, f.high] for f in self.factors],
        }


SWEEP_KEYS = ("design", "samples", "levels", "metrics", "model")
VARIED_SECTIONS = {"levers": "lever", "uncertainties": "uncertainty"}
DEFAULT_METRICS = ("reach_share", "visit_conversion", "return_rate", "brand_profit")


def is_sweep_file(path: str | Path) -> bool:
    """A readable TOML file with a sweep's top key or a varied value (the scenario loader
    says what is wrong with any other file)."""
    path = Path(path)
    try:
        raw = read_toml(path) if path.is_file() else {}
    except (ParameterError, OSError):
        return False
    return any(k in raw for k in SWEEP_KEYS) or any(
        is_varied(v)
        for section in VARIED_SECTIONS
        if isinstance(raw.get(section), Mapping)
        for _, v in _walk(raw[section])
    )


def load_sweep(path: str | Path, overrides: Iterable[str] = ()) -> Sweep:
    """Read and validate a sweep file: a scenario file (:mod:`sim.experiments.scenario`, the
    same grammar) whose varied levers and uncertainties are the factors, plus the sweep's own
    keys. ``overrides`` (``--set``) change what the sweep holds fixed, not what it varies.
    Errors name the file, the key and what is allowed."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a sweep file" if path.is_dir() else "file not found"
        raise ScenarioError(f"{path}: {what}")
    read = read_file(path, SWEEP_KEYS)
    own = {k: read.flat.pop(k) for k in SWEEP_KEYS if k in read.flat}
    for k in SWEEP_KEYS:
        read.origin.pop(k, None)
    model = own.get("model", "fishschool")
    if model not in MODELS:
        raise ScenarioError(f"{path}: model = {model!r} is not allowed: choose one of {MODELS}")
    design = own.get("design", "random")
    if design not in DESIGNS:
        raise ScenarioError(
            f"{path}: design = {design!r} is not allowed: choose one of {', '.join(DESIGNS)}"
        )
    ints = {
        "samples": (own.get("samples", 16), 1, 1_000_000),
        "levels": (own.get("levels", 3), 2, 1000),
    }
    for key, (value, lo, hi) in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ScenarioError(f"{path}: {key} = {value!r} must be an integer in [{lo}, {hi}]")
    samples = ints["samples"][0]
    if design == "sobol" and samples & (samples - 1):
        raise ScenarioError(f"{path}: samples = {samples} must be a power of 2 for design 'sobol'")
    metrics = own.get("metrics", list(DEFAULT_METRICS))
    if not isinstance(metrics, list) or not metrics:
        raise ScenarioError(f"{path}: metrics must be a non-empty list of metric names")
    known = list(SUMMARY_METRICS) if model == "fishschool" else ["y"]
    for m in metrics:
        if m not in known:
            raise ScenarioError(
                f"{path}: metrics: unknown metric {m!r}{_did_you_mean(str(m), known)}"
            )
    varied = {k: read.flat.pop(k) for k in list(read.flat) if is_varied(read.flat[k])}
    where = {k: read.origin.pop(k) for k in varied}
    overrides = tuple(overrides)
    for item in overrides:
        if parse_override(item)[0] in varied:
            raise ScenarioError(f"--set {item}: the sweep varies this parameter")
    # What the sweep holds fixed: its own settings, those it extends and the overrides.
    base = build(read, overrides)
    factors = [_factor(where[key], key, spec, model) for key, spec in varied.items()]
    if not factors:
        raise ScenarioError(
            f"{path}: nothing to vary: give a lever or uncertainty a range [low, high] or "
            "{values = [...]}"
        )
    if design in ("sobol", "morris"):
        for f in factors:
            if not f.is_range:
                raise ScenarioError(
                    f"{path}: {f.name}: design {design!r} needs a [low, high] range, "
                    "not a list of values (use grid, random or lhs)"
                )
    return Sweep(
        name=base.name,
        question=base.question,
        path=path,
        text=path.read_text(encoding="utf-8"),
        base=base,
        design=design,
        samples=samples,
        levels=ints["levels"][0],
        replicates=base.replicates,
        seed=base.seed,
        metrics=tuple(metrics),
        factors=tuple(factors),
        model=model,
    )


def _factor(where: str, key: str, spec: Any, model: str) -> Factor:
    """A varied parameter from its key path (``levers.x.y``) and spec."""
    section, _, rest = key.partition(".")
    where = f"{where}: {key}"
    if section not in VARIED_SECTIONS:
        raise ScenarioError(
            f"{where}: only levers and uncertainties vary in a sweep; [{section}] sets one value"
        )
    kind = VARIED_SECTIONS[section]
    name = parameter_name(key, where.rpartition(":")[0]) if model == "fishschool" else rest
    if isinstance(spec, Mapping):
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{where}: values must be a non-empty list")
        if model == "fishschool":
            values = [_checked(where, name, v) for v in values]
        return Factor(name, kind, values=tuple(values))
    if len(spec) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in spec
    ):
        raise ScenarioError(f"{where} = {spec!r}: a range is [low, high] (two numbers)")
    low, high = spec
    if not low < high:
        raise ScenarioError(f"{where} = {spec!r}: low must be below high")
    integer = False
    if model == "fishschool":
        integer = is_whole_number(name)
        _checked(where, name, int(low) if integer else low)
        _checked(where, name, int(high) if integer else high)
    return Factor(name, kind, low=float(low), high=float(high), integer=integer)


def _checked(where: str, name: str, value: Any) -> Any:
    try:
        return check_value(name, value)
    except ParameterError as err:
        raise ScenarioError(f"{where}: {err}") from None


# ----------------------------------------------------------------------------------------------
# Designs
# ----------------------------------------------------------------------------------------------
def design_points(sweep: Sweep) -> list[dict[str, Any]]:
    """The parameter points of a sweep, deterministic in its seed.

    For ``random`` and ``lhs`` designs, factors given as ``{values = [...]}`` are crossed with
    the sampled ones: every combination of the listed values meets the same samples of the
    ranges (policies x scenarios, in exploratory-modelling terms), so lever settings are
    compared on the same uncertainty samples.
    """
    listed = [f for f in sweep.factors if not f.is_range]
    if sweep.design in ("random", "lhs") and listed:
        ranges = tuple(f for f in sweep.factors if f.is_range)
        sampled = design_points(dataclasses.replace(sweep, factors=ranges)) if ranges else [{}]
        combos = itertools.product(*[f.options for f in listed])
        points = []
        for combo in combos:
            fixed = dict(zip([f.name for f in listed], combo, strict=True))
            points += [{**fixed, **p} for p in sampled]
        order = [f.name for f in sweep.factors]
        return [{name: p[name] for name in order} for p in points]
    factors = sweep.factors
    rng = np.random.default_rng(sweep.seed)
    rows: list[Any]
    if sweep.design == "grid":
        axes = [
            f.options if not f.is_range else np.linspace(*f.bounds, sweep.levels) for f in factors
        ]
        rows = list(itertools.product(*axes))
    elif sweep.design == "random":
        rows = []
        for _ in range(sweep.samples):
            rows.append(
                [
                    f.options[rng.integers(len(f.options))]
                    if not f.is_range
                    else rng.uniform(*f.bounds)
                    for f in factors
                ]
            )
    elif sweep.design == "lhs":
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d=len(factors), seed=rng).random(sweep.samples)
        rows = qmc.scale(u, [f.low for f in factors], [f.high for f in factors]).tolist()
    elif sweep.design == "sobol":
        from SALib.sample import sobol

        # First and total order only: second-order indices are not reported, and their
        # sampling would take D more runs per base sample (Saltelli 2010).
        rows = sobol.sample(
            sweep.problem(), sweep.samples, calc_second_order=False, seed=sweep.seed
        ).tolist()
    else:  # morris
        from SALib.sample import morris

        rows = morris.sample(sweep.problem(), sweep.samples, seed=sweep.seed).tolist()
    points = []
    for row in rows:
        point = {}
        for f, v in zip(factors, row, strict=True):
            if isinstance(v, np.generic):
                v = v.item()
            if f.is_range and f.integer:
                v = int(round(v))
            point[f.name] = v
        points.append(point)
    return points


def count_points(sweep: Sweep) -> int:
    """How many points :func:`design_points` gives, counted without drawing them."""
    d = len(sweep.factors)
    listed = [f for f in sweep.factors if not f.is_range]
    if sweep.design in ("random", "lhs") and listed:
        combos = math.prod(len(f.options) for f in listed)
        return combos * (sweep.samples if len(listed) < d else 1)
    if sweep.design == "grid":
        return math.prod(sweep.levels if f.is_range else len(f.options) for f in sweep.factors)
    if sweep.design == "sobol":
        return sweep.samples * (d + 2)  # Saltelli's scheme without second order
    if sweep.design == "morris":
        return sweep.samples * (d + 1)  # trajectories of d + 1 points
    return sweep.samples  # random, lhs


def count_runs(sweep: Sweep) -> int:
    """How many runs the sweep plans (points x replicates), counted without planning them."""
    return count_points(sweep) * sweep.replicates


def largest_world(sweep: Sweep) -> Params:
    """The largest world a sweep builds: its base with the factors on the number of consumers
    and the graph's degree at their largest values (for the memory check)."""
    largest: dict[str, Any] = {}
    for f in sweep.factors:
        if f.name in ("world.consumers", "graph.mean_degree"):
            values = [f.bounds[1]] if f.is_range else [v for v in f.options if _is_number(v)]
            if values:
                largest[f.name] = max(values)
    if "world.consumers" in largest:
        largest["world.consumers"] = int(largest["world.consumers"])
    try:
        return sweep.base.params.with_overrides(largest)
    except ParameterError:  # e.g. fewer consumers than owners: the runs will say so
        return sweep.base.params


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_size(sweep: Sweep, allow_large: bool = False) -> int:
    """The number of planned runs; above :data:`MAX_RUNS` a :class:`SweepError` unless
    ``allow_large`` (planning alone would take memory in proportion)."""
    runs = count_runs(sweep)
    if runs > MAX_RUNS and not allow_large:
        raise SweepError(
            f"{sweep.path}: the sweep plans {runs:,} runs ({count_points(sweep):,} points x "
            f"{sweep.replicates} replicates), above the limit of {MAX_RUNS:,}: lower samples, "
            "levels or replicates, or pass --yes to plan and run them all"
        )
    return runs


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------
def run_key(base_sha: str, point: Mapping[str, Any], seed: int) -> str:
    """The storage key of one run: hash of the base scenario, the point and the seed."""
    text = json.dumps({"base": base_sha, "point": dict(point), "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@functools.cache
def model_digest(packages: tuple[str, ...] = ("world", "experiments")) -> str:
    """SHA-256 of the model's source, computed once per process: the relative path and bytes
    of every ``.py`` file of :mod:`sim.world` and :mod:`sim.experiments` (or of ``packages``
    of :mod:`sim`), sorted by path.

    Run keys include it, so a sweep resumed after any change of the model or its engine
    recomputes instead of reusing runs of another model (conservatively: also after an edit
    that changes no number); an edit of the command line does not.
    """
    root = Path(sim.__file__).resolve().parent
    # What a run's numbers depend on: the world and the engine that runs it (not the CLI).
    files = sorted(
        (path.relative_to(root).as_posix(), path)
        for package in packages
        for path in (root / package).rglob("*.py")
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    digest = hashlib.sha256()
    for name, path in files:
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@dataclass
class SweepReport:
    """What a sweep did: how many runs, how many reused, which failed, where the data is."""

    total: int
    computed: int
    skipped: int
    failures: list[dict[str, Any]]
    dataset: Path
    wall_s: float
    model_s: float = 0.0  # seconds the computed runs spent in the model (build, days, tables)


def plan(sweep: Sweep, *, allow_large: bool = False) -> list[dict[str, Any]]:
    """Every run of the sweep as plain data, with its key, in a fixed order.

    Refuses (:class:`SweepError`) more than :data:`MAX_RUNS` runs unless ``allow_large``.
    """
    check_size(sweep, allow_large)
    seeds = replicate_seeds(sweep.seed, sweep.replicates)
    params = sweep.base.params.to_dict()
    metrics = list(sweep.metrics)
    # What a stored run depends on besides its point and seed: the parameters held fixed (not
    # the file's text: an edit of samples or comments keeps the runs), the model, the metrics
    # kept and the model's source code (a changed model must not reuse old runs).
    fixed = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    identity = "|".join([fixed, sweep.model, *sorted(sweep.metrics), model_digest()])
    tasks = []
    for i, point in enumerate(design_points(sweep)):
        for r, seed in enumerate(seeds):
            tasks.append(
                {
                    "key": run_key(identity, point, seed),
                    "point_id": i,
                    "replicate": r,
                    "seed": seed,
                    "point": point,
                    "params": params,  # one dict for every run: sent once per batch
                    "tables": ["summary"],
                    "metrics": metrics,
                    "model": sweep.model,
                    "form": "rows",  # only the summary rows a record keeps come back
                }
            )
    return tasks


# ----------------------------------------------------------------------------------------------
# The sweep folder
# ----------------------------------------------------------------------------------------------
def check_out(sweep: Sweep, out: str | Path) -> None:
    """Refuse (:class:`SweepError`) an output folder that is not this sweep's.

    Accepted: a missing or empty folder, or one whose manifest is this sweep's (the same sweep
    text, or the same name and sweep file: an edited sweep resumes). Refused: a file, a results
    folder of ``run`` or ``compare``, another sweep's folder, any other non-empty folder.
    """
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise SweepError(f"--out {out} is a file, not a folder: choose another --out")
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        try:
            empty = all(_leftover(p) for p in out.iterdir())
        except OSError as err:
            raise SweepError(f"--out {out}: cannot read the folder ({err.strerror})") from None
        if empty:
            return
        raise SweepError(
            f"--out {out} holds other files and no sweep manifest: a sweep writes only into "
            "a new or empty folder or its own folder; choose another --out"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and _same_sweep(manifest, sweep):
        return
    raise SweepError(
        f"--out {out} holds {_holds(manifest)}, not sweep '{sweep.name}': choose another --out"
    )


def _leftover(path: Path) -> bool:
    """What an interrupted sweep may leave before its manifest: temporary files, ``runs/``."""
    if path.name.startswith(".") and path.name.endswith(LEFTOVER_SUFFIXES):
        return True
    return path.name == "runs" and path.is_dir() and all(_leftover(p) for p in path.iterdir())


def _sweep_path(sweep: Sweep) -> str | None:
    return str(sweep.path.resolve()) if sweep.path.is_file() else None


def _same_sweep(manifest: Mapping[str, Any], sweep: Sweep) -> bool:
    if "sweep_text" not in manifest or "factors" not in manifest:
        return False  # not a sweep's manifest
    if manifest.get("sha256") == sweep.sha256:
        return True
    if manifest.get("name") != sweep.name:
        return False
    theirs, ours = manifest.get("sweep_path"), _sweep_path(sweep)
    return theirs is None or ours is None or theirs == ours


def _holds(manifest: Any) -> str:
    if not isinstance(manifest, dict):
        return "an unreadable manifest.json"
    if "sweep_text" in manifest:
        return f"sweep '{manifest.get('name')}' (from {manifest.get('sweep_file')})"
    if "scenarios" in manifest:
        return "the results of a run or compare"
    return "other results (a manifest.json that is not a sweep's)"


class BadRecord(ValueError):
    """A stored run record is damaged; the message says how."""


def read_record(path: Path, task: Mapping[str, Any]) -> dict[str, list] | None:
    """The rows (channel, metric, value lists) of ``task``'s record at ``path``, None if there
    is none; :class:`BadRecord` if it is empty, truncated or not this run's record."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise BadRecord(f"unreadable ({err.strerror or err})") from None
    if not data.strip():
        raise BadRecord("empty")
    try:
        record = json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        raise BadRecord("not valid JSON (truncated?)") from None
    if not isinstance(record, dict):
        raise BadRecord("not a run record")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise BadRecord(f"not a run record (no {', '.join(missing)})")
    if record["key"] != task["key"] or record["seed"] != task["seed"]:
        raise BadRecord("the record of another run")
    rows = record["rows"]
    if not isinstance(rows, dict) or not all(isinstance(rows.get(c), list) for c in ROW_COLUMNS):
        raise BadRecord("its rows are not channel, metric and value lists")
    n = len(rows["value"])
    if n == 0 or any(len(rows[c]) != n for c in ROW_COLUMNS):
        raise BadRecord("its rows are empty or of unequal lengths")
    if not all(isinstance(x, str) for x in rows["channel"] + rows["metric"]):
        raise BadRecord("its channels and metrics are not names")
    if not set(rows["metric"]) <= set(task["metrics"]):
        raise BadRecord("its metrics are not the sweep's")
    if not all(v is None or type(v) in (int, float) for v in rows["value"]):
        raise BadRecord("its values are not numbers")
    return {c: rows[c] for c in ROW_COLUMNS}


def read_records(
    runs: Path, tasks: list[dict[str, Any]], *, remove_bad: bool = False
) -> dict[str, dict[str, list]]:
    """The rows of every stored run of ``tasks`` by key; a damaged record is said on stderr
    (one line) and left out (``remove_bad``: deleted, so that it is recomputed)."""
    found: dict[str, dict[str, list]] = {}
    seen = set()
    for task in tasks:
        key = task["key"]
        if key in seen:
            continue
        seen.add(key)
        path = runs / f"{key}.json"
        try:
            rows = read_record(path, task)
        except BadRecord as err:
            what = "recomputing it" if remove_bad else "leaving it out"
            print(f"fishschool: sweep: damaged run record {path}: {err}; {what}", file=sys.stderr)
            if remove_bad:
                path.unlink(missing_ok=True)
            continue
        if rows is not None:
            found[key] = rows
    return found


class _RecordWriter:
    """Writes run records (atomically, each fsynced before its rename) on a few threads.

    Several writes in flight let the disk commit them together: alone an fsynced record costs
    milliseconds, which would dominate a sweep of fast runs. The folder is fsynced at most once
    a second and at the end (a rename lost to a power cut only means a run recomputed). At most
    ``backlog`` writes wait, so an interrupted sweep finishes them at once and loses no run.
    """

    def __init__(self, folder: Path, threads: int = 8, backlog: int = 64) -> None:
        self.folder = folder
        self.backlog = backlog
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="sweep-records")
        self.waiting: collections.deque[Future] = collections.deque()
        self.synced = time.monotonic()

    def submit(self, path: Path, text: str, remove: Path | None = None) -> None:
        self.waiting.append(self.pool.submit(self._write, path, text, remove))
        while self.waiting and (len(self.waiting) > self.backlog or self.waiting[0].done()):
            self.waiting.popleft().result()  # a failed write raises here

    def _write(self, path: Path, text: str, remove: Path | None) -> None:
        atomic.write_text(path, text, sync_dir=False)
        if remove is not None:
            remove.unlink(missing_ok=True)
        now = time.monotonic()
        if now - self.synced > 1.0:
            self.synced = now
            atomic.fsync_dir(self.folder)

    def close(self, check: bool = True) -> None:
        """Finish every write; ``check``: raise the first that failed."""
        self.pool.shutdown(wait=True)
        atomic.fsync_dir(self.folder)
        if check:
            while self.waiting:
                self.waiting.popleft().result()


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    executor: Executor | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    *,
    allow_large: bool = False,
) -> SweepReport:
    """Run (or resume) a sweep into ``out``; ``executor=None`` runs serially here.

    ``progress(done, failed, total)`` is called as runs finish. Before any work:
    :class:`SweepError` if ``out`` is not this sweep's folder (:func:`check_out`) or the plan
    is above :data:`MAX_RUNS` runs and not ``allow_large``.
    """
    out = Path(out)
    runs = out / "runs"
    check_out(sweep, out)
    todo = plan(sweep, allow_large=allow_large)
    started = now()
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_manifest(sweep, out, len(todo), started)
        runs.mkdir(exist_ok=True)
    except OSError as err:
        raise SweepError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    for folder in (out, runs):  # what killed sweeps left half-written
        atomic.remove_leftovers(folder)
    # Identical points (e.g. after rounding a whole-number parameter) are one run.
    unique = list({t["key"]: t for t in todo}.values())
    records = read_records(runs, unique, remove_bad=True)
    pending = [t for t in unique if t["key"] not in records]
    skipped = len(unique) - len(pending)
    failures: list[dict[str, Any]] = []
    done = skipped
    t0 = time.perf_counter()
    if progress:
        progress(done, 0, len(todo))
    writer = _RecordWriter(runs)

    model_s = 0.0

    def finish(task: Mapping[str, Any], result: Mapping[str, Any] | None, error):
        nonlocal done, model_s
        err_path = runs / f"{task['key']}.error.json"
        if error is None:
            assert result is not None
            model_s += sum(result["timings"].get(k, 0.0) for k in MODEL_TIMINGS)
            record = {
                "key": task["key"],
                "point_id": task["point_id"],
                "replicate": task["replicate"],
                "seed": task["seed"],
                "point": task["point"],
                "rows": {c: result["rows"][c] for c in ROW_COLUMNS},
            }
            text = json.dumps(record)
            records[task["key"]] = json.loads(text)["rows"]  # as a resumed sweep reads it
            writer.submit(runs / f"{task['key']}.json", text, remove=err_path)
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
            failures.append(record)
        done += 1
        if progress:
            progress(done, len(failures), len(todo))

    finished = False
    try:
        for task, result, error in run_many(pending, executor):
            finish(task, result, error)
        finished = True
    finally:
        writer.close(check=finished)  # on Ctrl-C or SIGTERM too: no finished run is lost
    dataset = gather(out, todo, records)
    _write_manifest(sweep, out, len(todo), started, done=True)
    return SweepReport(
        len(unique),
        len(pending),
        skipped,
        failures,
        dataset,
        time.perf_counter() - t0,
        model_s,
    )


def _write_manifest(sweep: Sweep, out: Path, runs: int, started: str, done: bool = False) -> None:
    """The sweep's manifest: written when it starts (``finished`` empty) and again when every
    run is gathered."""
    record = provenance(None, started)
    if not done:
        record["finished"] = None  # still running, or killed: a rerun resumes
    manifest = {
        "name": sweep.name,
        "question": sweep.question,
        "sweep_file": str(sweep.path),
        "sweep_path": _sweep_path(sweep),  # absolute: tells this sweep's folder (check_out)
        "sweep_text": sweep.text,
        "sha256": sweep.sha256,
        "model": sweep.model,
        "design": sweep.design,
        "second_order": False,  # Sobol designs sample first and total order only
        "samples": sweep.samples,
        "replicates": sweep.replicates,
        "seed": sweep.seed,
        "seeds": replicate_seeds(sweep.seed, sweep.replicates),
        "runs": runs,
        "metrics": list(sweep.metrics),
        "factors": [
            {
                "name": f.name,
                "kind": f.kind,
                "low": f.low,
                "high": f.high,
                "values": list(f.values) if f.values is not None else None,
                "integer": f.integer,
            }
            for f in sweep.factors
        ],
        "base": {
            "name": sweep.base.name,
            "sha256": sweep.base.sha256,
            "parameters": sweep.base.params.to_dict(),
            "text": sweep.base.text,
        },
        "model_digest": model_digest(),
        **record,
    }
    atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str))


def gather(
    out: str | Path,
    tasks: list[dict[str, Any]],
    records: Mapping[str, Mapping[str, list]] | None = None,
) -> Path:
    """Collect the runs of ``tasks`` (see :func:`plan`) into ``sweep.parquet``, atomically.

    One row per run, channel and metric: ``point_id, replicate, seed, channel, metric,
    value`` and one column per varied parameter. Runs not (yet) done are left out.
    ``records``: the rows by key, as :func:`read_records` gives (read from ``runs/`` if None).
    """
    out = Path(out)
    results = read_records(out / "runs", tasks) if records is None else records
    # Built column by column: one DataFrame per run would take seconds for thousands of runs.
    names = list(dict.fromkeys(name for t in tasks for name in t["point"]))
    columns: dict[str, list] = {
        c: [] for c in ("point_id", "replicate", "seed", *ROW_COLUMNS, *names)
    }
    for task in tasks:
        rows = results.get(task["key"])
        if rows is None:
            continue
        k = len(rows["value"])
        for col in ("point_id", "replicate", "seed"):
            columns[col].extend([task[col]] * k)
        for col in ROW_COLUMNS:
            columns[col].extend(rows[col])
        for name in names:
            columns[name].extend([task["point"].get(name)] * k)
    df = pd.DataFrame(columns)
    if not df.empty:
        df = df.sort_values(["point_id", "replicate", "channel", "metric"], kind="stable")
    path = out / "sweep.parquet"
    table = df.reset_index(drop=True)
    atomic.write_file(path, lambda fh: table.to_parquet(fh, index=False))
    return path
