"""Batch parameter sweeps: many points, any executor, nothing lost.

A sweep file (TOML) names a base scenario and what to vary::

    # Question: where does the owners' low return rate stop holding?
    base = "owners.toml"          # a scenario file (relative to this file) or a shipped name
    design = "sobol"              # grid | random | lhs | sobol | morris
    samples = 64                  # sobol: N (a power of 2, N x (2D + 2) points); morris:
                                  # trajectories; random / lhs: points; grid: levels per range
    replicates = 2
    seed = 1
    outcomes = ["return_rate", "visit_conversion", "brand_profit"]

    [set]                         # fixed overrides of the base (as fishschool --set)
    world.consumers = 10_000
    horizon = 30

    [levers]                      # varied: [low, high] or {values = [...]}
    platform.selection_strictness = [0.0, 0.8]
    channels.streamer = {values = [true, false]}

    [uncertainties]
    returns.misfit = [1.0, 4.0]

Each run is a pure function of plain data (:func:`run_task`: scenario parameters, point,
replicate seed), handed to a ``concurrent.futures.Executor``: local processes by default, or a
Dask cluster's executor, with identical numbers either way. Replicate r of every point uses the
same seed (common random numbers across points).

Nothing is lost: each run's result is written atomically to ``runs/KEY.json``, where KEY
hashes the base scenario, the model, the outcomes, the package version, the point and the
replicate seed; a rerun of the same sweep skips the
keys already there, so a sweep killed at any moment resumes without recomputing finished runs.
A run that raises is recorded in ``runs/KEY.error.json`` with its parameters and traceback; the
sweep goes on, reports failures at the end (and retries them on the next run).
The whole sweep is gathered into ``sweep.parquet``: one row per run, channel and outcome, with
the parameters as columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim import __version__
from sim.metrics import SUMMARY_METRICS
from sim.params import (
    ParameterError,
    _did_you_mean,
    check_value,
    is_whole_number,
    kind_of,
    read_toml,
)
from sim.scenario import Scenario, ScenarioError, load, replicate_seeds, resolve

DESIGNS = ("grid", "random", "lhs", "sobol", "morris")
MODELS = ("fishschool", "ishigami")  # ishigami: an analytic test function, for verification
TOP_KEYS = (
    "base",
    "name",
    "question",
    "design",
    "samples",
    "replicates",
    "seed",
    "outcomes",
    "model",
    "levels",
)
SECTIONS = ("set", "levers", "uncertainties")


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
    outcomes: tuple[str, ...]
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


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (errors name the file, the key and what is allowed)."""
    path = Path(path)
    try:
        raw = read_toml(path)
    except ParameterError as err:
        raise ScenarioError(str(err)) from None
    for key in raw:
        if key not in TOP_KEYS and key not in SECTIONS:
            allowed = [*TOP_KEYS, *SECTIONS]
            raise ScenarioError(f"{path}: unknown key '{key}'{_did_you_mean(key, allowed)}")
    model = raw.get("model", "fishschool")
    if model not in MODELS:
        raise ScenarioError(f"{path}: model = {model!r} is not allowed: choose one of {MODELS}")
    design = raw.get("design", "random")
    if design not in DESIGNS:
        raise ScenarioError(
            f"{path}: design = {design!r} is not allowed: choose one of {', '.join(DESIGNS)}"
        )
    ints = {
        "samples": (raw.get("samples", 16), 1, 1_000_000),
        "replicates": (raw.get("replicates", 1), 1, 10_000),
        "seed": (raw.get("seed", 0), 0, 2**63 - 1),
        "levels": (raw.get("levels", 3), 2, 1000),
    }
    for key, (value, lo, hi) in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ScenarioError(f"{path}: {key} = {value!r} must be an integer in [{lo}, {hi}]")
    samples = ints["samples"][0]
    if design == "sobol" and samples & (samples - 1):
        raise ScenarioError(f"{path}: samples = {samples} must be a power of 2 for design 'sobol'")
    outcomes = raw.get(
        "outcomes", ["reach_share", "visit_conversion", "return_rate", "brand_profit"]
    )
    if not isinstance(outcomes, list) or not outcomes:
        raise ScenarioError(f"{path}: outcomes must be a non-empty list of metric names")
    known = list(SUMMARY_METRICS) if model == "fishschool" else ["y"]
    for o in outcomes:
        if o not in known:
            raise ScenarioError(
                f"{path}: outcomes: unknown metric {o!r}{_did_you_mean(str(o), known)}"
            )

    fixed = [f"{k}={json.dumps(v)}" for k, v in _flat(raw.get("set", {}))]
    if model == "fishschool":
        if "base" not in raw:
            raise ScenarioError(f"{path}: base must name the scenario the sweep starts from")
        base_ref = raw["base"]
        base_path = path.parent / base_ref
        base = load(base_path if base_path.is_file() else resolve(base_ref), fixed)
    else:
        from sim.scenario import default

        base = default()
    factors = []
    for section in ("levers", "uncertainties"):
        for name, spec in _flat(raw.get(section, {}), leaf=_is_spec):
            factors.append(_factor(path, section, name, spec, model))
    if not factors:
        raise ScenarioError(f"{path}: nothing to vary: add [levers] or [uncertainties]")
    if design in ("sobol", "morris"):
        for f in factors:
            if not f.is_range:
                section = "levers" if f.kind == "lever" else "uncertainties"
                raise ScenarioError(
                    f"{path}: {section}.{f.name}: design {design!r} needs a [low, high] range, "
                    "not a list of values (use grid, random or lhs)"
                )
    return Sweep(
        name=raw.get("name", path.stem),
        question=raw.get("question", ""),
        path=path,
        text=path.read_text(encoding="utf-8"),
        base=base,
        design=design,
        samples=samples,
        levels=ints["levels"][0],
        replicates=ints["replicates"][0],
        seed=ints["seed"][0],
        outcomes=tuple(outcomes),
        factors=tuple(factors),
        model=model,
    )


def _is_spec(value: Any) -> bool:
    return isinstance(value, list) or (isinstance(value, Mapping) and "values" in value)


def _flat(table: Mapping[str, Any], prefix: str = "", leaf=lambda v: not isinstance(v, Mapping)):
    for key, value in table.items():
        name = f"{prefix}{key}"
        if leaf(value):
            yield name, value
        elif isinstance(value, Mapping):
            yield from _flat(value, f"{name}.", leaf)
        else:
            yield name, value


def _factor(path: Path, section: str, name: str, spec: Any, model: str) -> Factor:
    where = f"{path}: {section}.{name}"
    kind = section.rstrip("s") if section == "levers" else "uncertainty"
    if model == "fishschool":
        try:
            actual = kind_of(name)
        except ParameterError as err:
            raise ScenarioError(f"{where}: {err}") from None
        if actual != kind:
            raise ScenarioError(f"{where}: {name} is a {actual}, not a {kind}")
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
        combos = itertools.product(*[f.values for f in listed])
        points = []
        for combo in combos:
            fixed = dict(zip([f.name for f in listed], combo, strict=True))
            points += [{**fixed, **p} for p in sampled]
        order = [f.name for f in sweep.factors]
        return [{name: p[name] for name in order} for p in points]
    factors = sweep.factors
    rng = np.random.default_rng(sweep.seed)
    if sweep.design == "grid":
        axes = [
            f.values if not f.is_range else np.linspace(f.low, f.high, sweep.levels)
            for f in factors
        ]
        rows = list(itertools.product(*axes))
    elif sweep.design == "random":
        rows = []
        for _ in range(sweep.samples):
            rows.append(
                [
                    f.values[rng.integers(len(f.values))]
                    if not f.is_range
                    else rng.uniform(f.low, f.high)
                    for f in factors
                ]
            )
    elif sweep.design == "lhs":
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d=len(factors), seed=rng).random(sweep.samples)
        rows = qmc.scale(u, [f.low for f in factors], [f.high for f in factors]).tolist()
    elif sweep.design == "sobol":
        from SALib.sample import sobol

        rows = sobol.sample(sweep.problem(), sweep.samples, seed=sweep.seed).tolist()
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


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------
def run_key(base_sha: str, point: Mapping[str, Any], seed: int) -> str:
    """The storage key of one run: hash of the base scenario, the point and the seed."""
    text = json.dumps({"base": base_sha, "point": dict(point), "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> float:
    """The Ishigami function (Ishigami & Homma 1990), the standard sensitivity test case.

    With x uniform on [-pi, pi]^3 its Sobol indices are known: S1 = (0.314, 0.442, 0),
    ST = (0.558, 0.442, 0.244).
    """
    return float(np.sin(x[0]) + a * np.sin(x[1]) ** 2 + b * x[2] ** 4 * np.sin(x[0]))


def run_task(task: Mapping[str, Any]) -> pd.DataFrame:
    """One run as a pure function of plain data; returns its tidy outcome rows.

    ``task``: ``model``, ``params`` (the base scenario's parameters as a dict), ``point``
    (dotted name -> value), ``seed``, ``outcomes``.
    """
    point = task["point"]
    if task["model"] == "ishigami":
        y = ishigami(np.array(list(point.values()), dtype=float))
        return pd.DataFrame({"channel": ["all"], "outcome": ["y"], "value": [y]})
    from sim.model import run
    from sim.params import Params

    params = Params.from_dict(task["params"]).with_overrides({**point, "seed": task["seed"]})
    summary = run(params).summary
    keep = summary[summary.metric.isin(task["outcomes"])]
    return keep.rename(columns={"metric": "outcome"}).reset_index(drop=True)


def _atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass
class SweepReport:
    """What a sweep did: how many runs, how many reused, which failed, where the data is."""

    total: int
    computed: int
    skipped: int
    failures: list[dict[str, Any]]
    dataset: Path
    wall_s: float


def plan(sweep: Sweep) -> list[dict[str, Any]]:
    """Every run of the sweep as plain data, with its key, in a fixed order."""
    seeds = replicate_seeds(sweep.seed, sweep.replicates)
    params = sweep.base.params.to_dict()
    # What a stored run depends on besides its point and seed: the base scenario, the model,
    # the outcomes kept and the package version (a changed model must not reuse old runs).
    identity = "|".join([sweep.base.sha256, sweep.model, *sorted(sweep.outcomes), __version__])
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
                    "params": params,
                    "outcomes": list(sweep.outcomes),
                    "model": sweep.model,
                }
            )
    return tasks


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    executor: Executor | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> SweepReport:
    """Run (or resume) a sweep into ``out``; ``executor=None`` runs serially here.

    ``progress(done, failed, total)`` is called as runs finish.
    """
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    todo = plan(sweep)
    _write_manifest(sweep, out, len(todo))
    # Identical points (e.g. after rounding a whole-number parameter) are one run.
    unique = list({t["key"]: t for t in todo}.values())
    pending = [t for t in unique if not (runs / f"{t['key']}.json").is_file()]
    skipped = len(unique) - len(pending)
    failures: list[dict[str, Any]] = []
    done = skipped
    t0 = time.perf_counter()
    if progress:
        progress(done, 0, len(todo))

    def finish(task: dict[str, Any], result: pd.DataFrame | None, error: BaseException | None):
        nonlocal done
        err_path = runs / f"{task['key']}.error.json"
        if error is None:
            record = {
                "key": task["key"],
                "point_id": task["point_id"],
                "replicate": task["replicate"],
                "seed": task["seed"],
                "point": task["point"],
                "rows": result[["channel", "outcome", "value"]].to_dict(orient="list"),
            }
            _atomic_write_text(json.dumps(record), runs / f"{task['key']}.json")
            err_path.unlink(missing_ok=True)
        else:
            record = {
                "key": task["key"],
                "point": task["point"],
                "seed": task["seed"],
                "replicate": task["replicate"],
                "error": f"{type(error).__name__}: {error}",
                "traceback": "".join(traceback.format_exception(error)),
            }
            _atomic_write_text(json.dumps(record, indent=2, default=str), err_path)
            failures.append(record)
        done += 1
        if progress:
            progress(done, len(failures), len(todo))

    if executor is None:
        for task in pending:
            try:
                finish(task, run_task(task), None)
            except Exception as err:  # recorded, the sweep goes on
                finish(task, None, err)
    else:
        futures = {executor.submit(run_task, task): task for task in pending}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                finish(task, fut.result(), None)
            except Exception as err:
                finish(task, None, err)
    dataset = gather(out, todo)
    return SweepReport(
        len(unique), len(pending), skipped, failures, dataset, time.perf_counter() - t0
    )


def _write_manifest(sweep: Sweep, out: Path, runs: int) -> None:
    from sim.output import machine, versions

    manifest = {
        "name": sweep.name,
        "question": sweep.question,
        "sweep_file": str(sweep.path),
        "sweep_text": sweep.text,
        "sha256": sweep.sha256,
        "model": sweep.model,
        "design": sweep.design,
        "samples": sweep.samples,
        "replicates": sweep.replicates,
        "seed": sweep.seed,
        "seeds": replicate_seeds(sweep.seed, sweep.replicates),
        "runs": runs,
        "outcomes": list(sweep.outcomes),
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
        "versions": versions(),
        "machine": machine(),
    }
    _atomic_write_text(json.dumps(manifest, indent=2, default=str), out / "manifest.json")


def gather(out: str | Path, tasks: list[dict[str, Any]]) -> Path:
    """Collect the runs of ``tasks`` (see :func:`plan`) into ``sweep.parquet``, atomically.

    One row per run, channel and outcome: ``point_id, replicate, seed, channel, outcome,
    value`` and one column per varied parameter. Runs not (yet) done are left out.
    """
    out = Path(out)
    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        path = out / "runs" / f"{task['key']}.json"
        if task["key"] not in results and path.is_file():
            results[task["key"]] = json.loads(path.read_text(encoding="utf-8"))["rows"]
    # Built column by column: one DataFrame per run would take seconds for thousands of runs.
    names = list(dict.fromkeys(name for t in tasks for name in t["point"]))
    columns: dict[str, list] = {
        c: [] for c in ("point_id", "replicate", "seed", "channel", "outcome", "value", *names)
    }
    for task in tasks:
        rows = results.get(task["key"])
        if rows is None:
            continue
        k = len(rows["value"])
        for col in ("point_id", "replicate", "seed"):
            columns[col].extend([task[col]] * k)
        for col in ("channel", "outcome", "value"):
            columns[col].extend(rows[col])
        for name in names:
            columns[name].extend([task["point"].get(name)] * k)
    df = pd.DataFrame(columns)
    if not df.empty:
        df = df.sort_values(["point_id", "replicate", "channel", "outcome"], kind="stable")
    path = out / "sweep.parquet"
    _atomic_write_parquet(df.reset_index(drop=True), path)
    return path
