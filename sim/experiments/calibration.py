"""Pattern-oriented calibration by sequential Monte Carlo ABC (ABC-SMC, pyabc).

Several patterns of the brief must hold at once (Grimm et al. 2005, pattern-oriented
modelling). The targets (each a range for one metric of one channel) and the uniform priors of
the uncertain parameters are data, in ``docs/calibration/targets.toml`` (:func:`load_setup`).

The calibration (:func:`calibrate`):

1. **Simulates a particle** (:func:`simulate`): the calibration world (the shipped defaults at
   a smaller size, owners in the same proportion: :func:`calibration_world`) with the
   particle's parameters, run for ``replicates`` replicates on fresh seeds (derived from the
   particle's values and the base seed, so a particle always sees the same worlds and two
   particles never share them); its pattern values are the means over the replicates.
2. **Scores it** (:func:`distance`): for each target, how far the value lies outside the range
   in widths of the range (0 inside; a missing value counts as 10 widths); the distance is the
   root of the sum of squares.
3. **Runs ABC-SMC** (Toni et al. 2009; Beaumont et al. 2009; pyabc: Klinger, Rickert &
   Hasenauer 2018): generation 0 samples the priors; each later generation perturbs the previous
   population's particles with a multivariate normal kernel (twice its weighted covariance,
   Beaumont et al. 2009: :data:`KERNEL_SCALING`), accepts those within a tolerance
   epsilon set to the median distance of the previous generation, and weights them by prior
   over proposal density. It stops after ``generations`` generations, or when every particle of
   a generation meets every target. Particles are simulated on any ``concurrent.futures``
   executor (local processes or a Dask cluster, as sweeps). Each finished generation is stored
   in ``abc.db`` (SQLite); a killed calibration resumes from its last finished generation.
4. **Checks the posterior**: a posterior predictive check (``predictive`` particles drawn by
   weight with systematic resampling, each the mean of ``replicates`` runs on fresh seeds: the
   share of draws inside each target's range is its coverage; :func:`tensions` says what moves
   with a missed target) and a scale check (:func:`scale_check`: the posterior median at the
   calibration size and at the shipped scenarios' 100,000 consumers, as many owners observed at
   both: does each pattern keep its value?).

Outputs in ``out``: ``posterior_samples.csv`` (the last generation: parameters and weight),
``posterior.csv`` (weighted 5%, 50%, 95% per parameter, with the prior range),
``generations.csv``, ``predictive.csv``, ``scale.csv``, ``calibrated.toml`` (the posterior
median as an ``[uncertainties]`` block), ``calibration.md`` and figures (``pairs.png``,
``predictive.png``), and ``manifest.json`` (settings and provenance).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.experiments.engine import run_one
from sim.experiments.scenario import Scenario, default, replicate_seeds
from sim.experiments.sweep import model_digest
from sim.world.channels import ALL, CHANNELS
from sim.world.metrics import SUMMARY_METRICS
from sim.world.params import ParameterError, check_value, is_whole_number, read_toml

MISSING_DISTANCE = 10.0  # a pattern a run could not measure counts as this many widths away
# The perturbation kernel: a normal with KERNEL_SCALING times the previous generation's weighted
# covariance (Beaumont et al. 2009: twice). pyabc's default (Silverman's bandwidth, a covariance
# of about 0.48 times it in 14 dimensions) let the weights degenerate: an effective sample size
# of 3.9 of 200 in the first calibration on record; 2-15 of 200 on a 14-parameter linear toy,
# where twice the covariance kept 118-142 at 30% more simulations.
KERNEL_SCALING = 2.0
# A run that cannot reach its tolerance stops after this many simulations per particle and
# generation (a generation at epsilon 0 with a tiny acceptance rate would run for ever).
MAX_SIMULATIONS_PER_PARTICLE = 12


def covariance_as_is(n: int, d: int) -> float:
    """Bandwidth factor 1: the kernel's covariance is KERNEL_SCALING x the weighted sample
    covariance (pyabc multiplies the covariance by this factor squared)."""
    return 1.0


def docs_folder() -> Path:
    """``docs/calibration/`` of this checkout: the shipped calibration's files."""
    return Path(__file__).resolve().parents[2] / "docs" / "calibration"


class CalibrationError(ParameterError):
    """A targets file, an output folder or a posterior file is not usable."""


# ----------------------------------------------------------------------------------------------
# Targets and priors
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    id: str
    pattern: str
    channel: str
    metric: str
    low: float
    high: float
    source: str


@dataclass(frozen=True)
class Setup:
    """What a calibration fits: targets, priors and the derived metrics targets may use."""

    targets: tuple[Target, ...]
    priors: dict[str, tuple[float, float]]
    derived: dict[str, tuple[str, str]] = field(default_factory=dict)
    text: str = ""  # the file's text (part of a calibration's identity)

    @property
    def metrics(self) -> list[str]:
        """The summary metrics a run must keep to measure every target."""
        out = set()
        for t in self.targets:
            out |= set(self.derived.get(t.metric, (t.metric,)))
        return sorted(out)


def load_setup(path: str | Path | None = None) -> Setup:
    """Targets and priors from a TOML file (default ``docs/calibration/targets.toml``); errors
    name the file, the key and what is allowed."""
    path = Path(path) if path is not None else docs_folder() / "targets.toml"
    try:
        raw = read_toml(path)
    except ParameterError as err:
        raise CalibrationError(str(err)) from None
    for key in raw:
        if key not in ("targets", "priors", "derived"):
            raise CalibrationError(f"{path}: unknown key '{key}': allowed targets, priors, derived")
    derived = {}
    for name, pair in raw.get("derived", {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= set(SUMMARY_METRICS)):
            raise CalibrationError(
                f"{path}: derived.{name} = {pair!r}: give [numerator, denominator], two metrics"
            )
        derived[name] = (pair[0], pair[1])
    targets = []
    for tid, spec in raw.get("targets", {}).items():
        where = f"{path}: targets.{tid}"
        need = ("pattern", "channel", "metric", "low", "high", "source")
        missing = [k for k in need if k not in spec]
        if missing:
            raise CalibrationError(f"{where}: missing {', '.join(missing)}")
        if spec["channel"] not in (*CHANNELS, ALL):
            raise CalibrationError(
                f"{where}: channel = {spec['channel']!r}: choose one of {(*CHANNELS, ALL)}"
            )
        if spec["metric"] not in SUMMARY_METRICS and spec["metric"] not in derived:
            raise CalibrationError(
                f"{where}: metric = {spec['metric']!r} is neither a summary metric nor [derived]"
            )
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise CalibrationError(f"{where}: low and high must be numbers")
        if not low < high:
            raise CalibrationError(f"{where}: low = {low} must be below high = {high}")
        targets.append(
            Target(
                tid,
                str(spec["pattern"]),
                spec["channel"],
                spec["metric"],
                float(low),
                float(high),
                str(spec["source"]),
            )
        )
    if not targets:
        raise CalibrationError(f"{path}: no [targets.ID] tables: nothing to fit")
    priors = {}
    for name, bounds in raw.get("priors", {}).items():
        where = f"{path}: priors.{name}"
        if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
            raise CalibrationError(f"{where} = {bounds!r}: a prior is [low, high] with low < high")
        for v in bounds:
            try:
                check_value(name, int(v) if is_whole_number(name) else float(v))
            except ParameterError as err:
                raise CalibrationError(f"{where}: {err}") from None
        priors[name] = (float(bounds[0]), float(bounds[1]))
    if not priors:
        raise CalibrationError(f"{path}: no [priors]: nothing to calibrate")
    return Setup(tuple(targets), priors, derived, path.read_text(encoding="utf-8"))


@functools.cache
def default_setup() -> Setup:
    """The shipped targets and priors (``docs/calibration/targets.toml``)."""
    return load_setup()


def smaller_world(consumers: int, days: int) -> list[str]:
    """Overrides for the default world at another size, owners in the default proportion
    (500 for 100,000 consumers). Shared by calibration and validation."""
    ratio = default().params
    owners = max(1, round(ratio.owners.count * consumers / ratio.world.consumers))
    return [f"world.consumers={consumers}", f"owners.count={owners}", f"world.days={days}"]


def calibration_world(consumers: int = 10_000, days: int = 120) -> Scenario:
    """The world the calibration runs in: the defaults at a smaller size (same ratios)."""
    return default(smaller_world(consumers, days))


def typed(name: str, value: float) -> float | int:
    """A parameter value as the model takes it: whole-number parameters rounded."""
    if is_whole_number(name):
        return int(round(value))
    return float(round(value, 6))


# ----------------------------------------------------------------------------------------------
# Patterns and distance
# ----------------------------------------------------------------------------------------------
def pattern_values(data: pd.DataFrame, setup: Setup | None = None) -> pd.DataFrame:
    """One row per ``point_id``, one column per target: the simulated value of each pattern.

    ``data``: tidy rows ``point_id, channel, metric, value`` (a sweep's, or a summary with
    ``point_id`` set to the replicate).
    """
    setup = setup or default_setup()
    wide = data.pivot_table(index="point_id", columns=["channel", "metric"], values="value")
    out = pd.DataFrame(index=wide.index)

    def column(channel: str, metric: str) -> pd.Series:
        # A metric that is NaN in every run (e.g. repeat purchase in a run too short for a
        # 90-day follow-up) is dropped by the pivot: it is missing, not an error.
        if (channel, metric) in wide.columns:
            return wide[(channel, metric)]
        return pd.Series(np.nan, index=wide.index)

    for t in setup.targets:
        if t.metric in setup.derived:
            num, den = setup.derived[t.metric]
            out[t.id] = column(t.channel, num) / column(t.channel, den).replace(0, np.nan)
        else:
            out[t.id] = column(t.channel, t.metric)
    return out


def distance(values: pd.DataFrame, setup: Setup | None = None) -> pd.Series:
    """Distance of each row of pattern values to the target ranges (0 when all are inside)."""
    setup = setup or default_setup()
    total = pd.Series(0.0, index=values.index)
    for t in setup.targets:
        v = values[t.id].replace([np.inf, -np.inf], np.nan)
        outside = np.maximum(t.low - v, 0) + np.maximum(v - t.high, 0)
        total += (outside / (t.high - t.low)).fillna(MISSING_DISTANCE) ** 2
    return np.sqrt(total)


def inside(values: pd.DataFrame, setup: Setup | None = None) -> pd.DataFrame:
    """Per row and target: is the value inside the target's range (a missing value is not)?
    Its column means are the predictive coverage."""
    setup = setup or default_setup()
    return pd.DataFrame(
        {t.id: (values[t.id] >= t.low) & (values[t.id] <= t.high) for t in setup.targets}
    )


def particle_seed(theta: Mapping[str, float], seed: int) -> int:
    """A seed of its own for each particle, from its values and the base seed."""
    text = json.dumps({"theta": {k: float(v) for k, v in sorted(theta.items())}, "seed": seed})
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def simulate(
    theta: Mapping[str, float],
    *,
    base: Mapping[str, Any],
    setup: Setup,
    replicates: int,
    seed: int,
) -> dict[str, float]:
    """The pattern values of one particle: the mean over ``replicates`` runs of the world
    ``base`` (a Params dict) with the particle's parameters, on the particle's own seeds."""
    values = pattern_runs(theta, base=base, setup=setup, replicates=replicates, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pattern missing in every replicate
        return {t.id: float(np.nanmean(values[t.id])) for t in setup.targets}


def pattern_runs(
    theta: Mapping[str, float],
    *,
    base: Mapping[str, Any],
    setup: Setup,
    replicates: int,
    seed: int,
) -> pd.DataFrame:
    """The pattern values of each of a particle's ``replicates`` runs: one row per run."""
    point = {name: typed(name, float(v)) for name, v in theta.items()}
    frames = []
    for r, s in enumerate(replicate_seeds(particle_seed(theta, seed), replicates)):
        task = {
            "params": base,
            "point": point,
            "seed": s,
            "tables": ["summary"],
            "metrics": setup.metrics,
            "tags": {"point_id": r},
        }
        frames.append(run_one(task)["summary"])
    return pattern_values(pd.concat(frames, ignore_index=True), setup)


def particle_distance(x: Mapping[str, float], x0: Mapping[str, float], setup: Setup) -> float:
    """:func:`distance` of one particle's pattern values (pyabc's distance signature)."""
    row = pd.DataFrame([{t.id: x.get(t.id, np.nan) for t in setup.targets}])
    return float(distance(row, setup).iloc[0])


# ----------------------------------------------------------------------------------------------
# The calibration
# ----------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    samples: pd.DataFrame  # the last generation: one row per particle, parameters and weight
    posterior: pd.DataFrame  # parameter, q05, median, q95, prior_low, prior_high
    generations: pd.DataFrame  # t, epsilon, particles, samples (simulations)
    predictive: pd.DataFrame  # one row per predictive draw: the pattern values
    coverage: dict[str, float]  # target id -> share of predictive draws inside the range
    scale: pd.DataFrame  # target, small, small_se, large, large_se, ratio, agrees
    median: dict[str, float | int]  # the posterior median, typed
    simulations: int = 0  # every particle simulated, the prior sample that set epsilon included


def systematic_resample(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices drawn by weight with one uniform offset (systematic resampling): each
    particle appears ``floor(size x weight)`` or one more times, so a draw of 100 from a
    posterior reflects its weights with far less noise than 100 independent draws.

    >>> systematic_resample(np.array([0.5, 0.25, 0.25]), 4, np.random.default_rng(0)).tolist()
    [0, 0, 1, 2]
    """
    w = np.asarray(weights, dtype=float)
    edges = np.cumsum(w / w.sum())
    edges[-1] = 1.0
    positions = (rng.random() + np.arange(size)) / size
    return np.searchsorted(edges, positions, side="right")


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q`` quantile of weighted samples (the inverse of the weighted empirical CDF).

    >>> weighted_quantile(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.0]), 0.5)
    2.0
    """
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cdf = np.cumsum(w) / w.sum()
    return float(v[min(int(np.searchsorted(cdf, q)), len(v) - 1)])


def effective_sample_size(weights: Sequence[float] | np.ndarray) -> float:
    """Kish's effective sample size of importance weights: 1 / sum of squared normalised weights.

    >>> effective_sample_size([1.0, 1.0, 1.0, 1.0])
    4.0
    """
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    return float(1.0 / (w**2).sum())


def _identity(setup: Setup, base: Scenario, replicates: int, seed: int, population: int) -> str:
    """What a stored calibration depends on: resuming with other settings is refused."""
    text = json.dumps(
        {
            "setup": setup.text,
            "base": base.params.to_dict(),
            "replicates": replicates,
            "seed": seed,
            "population": population,
            "kernel_scaling": KERNEL_SCALING,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def check_out(out: str | Path) -> Path:
    """calibrate writes into ``out`` and resumes there: a new or empty folder, or one an
    earlier calibration wrote (its manifest.json says so); never a folder of other files."""
    from sim.experiments.output import OutputExistsError, check_writable

    out = check_writable(out)
    if out.is_dir() and any(out.iterdir()):
        try:
            manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
            ours = manifest.get("content") == "calibration"
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise OutputExistsError(
                f"{out}: not a calibration folder of fishschool (no manifest.json saying so) "
                "and not empty: choose another --out"
            )
    return out


def load_posterior_samples(path: str | Path, option: str = "--posterior") -> pd.DataFrame:
    """A calibration's ``posterior_samples.csv``: a column per parameter and ``weight``; every
    value checked against its parameter's allowed range. Errors name the option and file."""
    from sim.experiments.output import ResultsError, read_csv

    path = Path(path)
    try:
        samples = read_csv(path, ("weight",))
    except ResultsError as err:
        raise ResultsError(f"{option} {err}") from None
    names = [c for c in samples.columns if c != "weight"]
    if not names or samples.empty:
        raise ResultsError(f"{option} {path}: no parameter columns or no rows")
    weights = pd.to_numeric(samples.weight, errors="coerce")
    if weights.isna().any() or (weights < 0).any() or weights.sum() <= 0:
        raise ResultsError(f"{option} {path}: weight must be non-negative numbers, not all 0")
    for name in names:
        try:
            for v in samples[name]:
                check_value(name, typed(name, float(v)))
        except (ParameterError, ValueError) as err:
            raise ResultsError(f"{option} {path}: column {name}: {err}") from None
    return samples.assign(weight=weights)


def check_posterior(path: str | Path, option: str) -> None:
    """A calibration's posterior.csv: readable, with parameter, q05 and q95 columns."""
    from sim.experiments.output import ResultsError, read_csv

    try:
        read_csv(Path(path), ("parameter", "q05", "q95"))
    except ResultsError as err:
        raise ResultsError(f"{option} {err}") from None


def calibrate(
    out: str | Path,
    *,
    setup: Setup | None = None,
    consumers: int = 10_000,
    days: int = 120,
    population: int = 200,
    generations: int = 6,
    replicates: int = 2,
    seed: int = 2026,
    predictive: int = 100,
    scale_consumers: int | None = 100_000,
    scale_replicates: int = 3,
    executor: Executor | None = None,
    workers: int = 1,
    log: Callable[[str], None] = lambda text: None,
) -> Calibration:
    """Run (or resume) the ABC-SMC calibration into ``out`` and write its report files.

    ``scale_consumers=None`` skips the scale check. ``log`` hears one line per step.
    """
    import pyabc

    from sim.experiments import atomic
    from sim.experiments.provenance import now, provenance

    setup = setup or default_setup()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = now()
    base = calibration_world(consumers, days)
    identity = _identity(setup, base, replicates, seed, population)
    manifest_path = out / "manifest.json"
    db = out / "abc.db"
    code = model_digest(("world",))  # the code the particles' numbers come from
    resume = False
    if manifest_path.is_file() and db.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("identity") != identity:
            raise CalibrationError(
                f"{out}: holds a calibration with other targets, priors, world, replicates, seed "
                "or population: choose another --out (or remove it)"
            )
        stored = pyabc.History(f"sqlite:///{db}").max_t + 1
        if old.get("model") != code:
            # Particles of another version of the model are never mixed into one posterior;
            # a finished calibration may redo its checks and report with today's code.
            if stored < generations:
                raise CalibrationError(
                    f"{out}: its particles were simulated by another version of the model "
                    f"(sim/world changed): finish it with that version, or choose another --out"
                )
            log("the particles come from another version of sim/world: only the checks rerun")
        resume = True
    manifest = {
        "tool": "fishschool",
        "content": "calibration",
        "identity": identity,
        "model": old.get("model") if resume else code,
        "checked_with_model": code,
        "targets_file": setup.text,
        "world": {"consumers": consumers, "days": days},
        "population": population,
        "generations": generations,
        "replicates": replicates,
        "seed": seed,
        **provenance(None, started),
        "finished": None,
    }
    atomic.write_text(manifest_path, json.dumps(manifest, indent=2, default=str))

    prior = pyabc.Distribution(
        **{name: pyabc.RV("uniform", lo, hi - lo) for name, (lo, hi) in setup.priors.items()}
    )
    model = functools.partial(
        simulate, base=base.params.to_dict(), setup=setup, replicates=replicates, seed=seed
    )
    dist = functools.partial(particle_distance, setup=setup)
    sampler: Any
    if executor is None:
        sampler = pyabc.sampler.SingleCoreSampler()
    else:
        sampler = pyabc.sampler.ConcurrentFutureSampler(
            cfuture_executor=executor, client_max_jobs=max(2, 2 * workers)
        )
    logging.getLogger("ABC").setLevel(logging.INFO)  # generation lines go to ``log``
    abc = pyabc.ABCSMC(
        model,
        prior,
        dist,
        population_size=population,
        sampler=sampler,
        transitions=pyabc.MultivariateNormalTransition(
            scaling=KERNEL_SCALING, bandwidth_selector=covariance_as_is
        ),
    )
    np.random.seed(seed % 2**32)  # noqa: NPY002 (pyabc draws from numpy's global generator)
    observed = {t.id: (t.low + t.high) / 2 for t in setup.targets}  # the distance reads ranges
    if resume:
        abc.load(f"sqlite:///{db}", 1)
        done = abc.history.max_t + 1
        log(f"resuming after generation {done - 1} of {generations}")
    else:
        abc.new(f"sqlite:///{db}", observed)
        done = 0
    history = abc.history
    # One run() for all remaining generations: calling it a generation at a time restarts the
    # tolerance schedule from the prior sample each time (epsilon would never shrink).
    # Stops early when epsilon reaches 0: every particle meets every target.
    pyabc_log = logging.getLogger("ABC")
    own = pyabc_log.handlers[:]  # pyabc prints to stderr itself: ours instead, while it runs
    pyabc_log.handlers = [_LogForward(log)]
    try:
        if done < generations:  # a finished calibration only redoes its checks and report
            history = abc.run(
                max_nr_populations=generations - done,
                minimum_epsilon=0.0,
                max_total_nr_simulations=MAX_SIMULATIONS_PER_PARTICLE * population * generations,
            )
    finally:
        pyabc_log.handlers = own
    df, w = history.get_distribution(m=0, t=history.max_t)
    samples = df.reset_index(drop=True).assign(weight=np.asarray(w) / np.sum(w))
    names = list(setup.priors)
    weights = samples.weight.to_numpy()

    def quantile(q: float) -> list[float | int]:  # whole-number parameters as the model ran
        return [typed(n, weighted_quantile(samples[n].to_numpy(), weights, q)) for n in names]

    posterior = pd.DataFrame(
        {
            "parameter": names,
            "q05": quantile(0.05),
            "median": quantile(0.5),
            "q95": quantile(0.95),
            "prior_low": [setup.priors[n][0] for n in names],
            "prior_high": [setup.priors[n][1] for n in names],
        }
    )
    median = {n: typed(n, m) for n, m in zip(posterior.parameter, posterior["median"], strict=True)}
    pops = history.get_all_populations()
    gens = pops[pops.t >= 0][["t", "epsilon", "particles", "samples"]].reset_index(drop=True)
    gens["effective_sample_size"] = [
        effective_sample_size(history.get_distribution(m=0, t=int(t))[1]) for t in gens.t
    ]

    log(f"posterior predictive check: {predictive} draws")
    # Each draw as the particles were fitted (the mean of ``replicates`` runs), on fresh seeds;
    # systematic resampling keeps the draws true to the weights.
    picks = systematic_resample(samples.weight.to_numpy(), predictive, np.random.default_rng(seed))
    calls = [
        functools.partial(
            simulate,
            samples.loc[i, names].to_dict(),
            base=base.params.to_dict(),
            setup=setup,
            replicates=replicates,
            seed=seed + 1 + k,  # fresh seeds: not the worlds the particle was fitted in
        )
        for k, i in enumerate(picks)
    ]
    pred = pd.DataFrame(_map(executor, calls)).assign(particle=picks)
    # A draw that cannot measure a pattern misses it (as the distance counts it).
    coverage = {k: float(v) for k, v in inside(pred, setup).mean().items()}
    scale = pd.DataFrame()
    if scale_consumers:
        log(f"scale check: the posterior median at {consumers:,} and {scale_consumers:,} consumers")
        scale = scale_check(
            setup, median, (consumers, scale_consumers), days, scale_replicates, seed, executor
        )
    res = Calibration(
        samples, posterior, gens, pred, coverage, scale, median, int(history.total_nr_simulations)
    )
    write(out, res, setup, base)
    manifest["simulations"] = res.simulations
    manifest["finished"] = now()
    atomic.write_text(manifest_path, json.dumps(manifest, indent=2, default=str))
    return res


class _LogForward(logging.Handler):
    """pyabc's generation lines ("t: 2, eps: 1.3", "Accepted: 100 / 214") to ``log``."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(("t:", "Accepted:", "Stop:")):
            self.log(f"ABC-SMC {text}")


def _map(executor: Executor | None, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each call's result, in order: run on ``executor``, or here when there is none."""
    if executor is None:
        return [call() for call in calls]
    futures = [executor.submit(call) for call in calls]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()


def scale_check(
    setup: Setup,
    point: Mapping[str, float | int],
    sizes: tuple[int, int],
    days: int,
    replicates: int,
    seed: int,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Each pattern at two world sizes (owners in proportion), the same parameters.

    The large world runs ``replicates`` times and the small one as many times more as it is
    smaller (at most 10x), so both sizes observe about as many owners and consumers and a
    difference is the model's, not the sample's. Returns ``target, small, small_se, large,
    large_se, ratio, agrees``: replicate means, their standard errors, large over small, and
    whether the two agree within 10% or two standard errors of the difference.
    """
    small_n, large_n = sizes
    runs = (replicates * min(10, max(1, round(large_n / small_n))), replicates)
    calls = [
        functools.partial(
            pattern_runs,
            dict(point),
            base=calibration_world(consumers, days).params.to_dict(),
            setup=setup,
            replicates=n_runs,
            seed=seed,
        )
        for consumers, n_runs in zip(sizes, runs, strict=True)
    ]
    small, large = _map(executor, calls)
    ids = [t.id for t in setup.targets]

    def se(values: pd.DataFrame) -> list[float]:
        return [float(values[i].std(ddof=1) / np.sqrt(values[i].notna().sum())) for i in ids]

    table = pd.DataFrame(
        {
            "target": ids,
            "small": [float(small[i].mean()) for i in ids],
            "small_se": se(small),
            "large": [float(large[i].mean()) for i in ids],
            "large_se": se(large),
        }
    ).assign(ratio=lambda d: d.large / d.small)
    gap = (table.large - table.small).abs()
    noise = 2 * np.hypot(table.small_se, table.large_se)
    return table.assign(agrees=(table.ratio.sub(1).abs() <= 0.1) | (gap <= noise))


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def write(out: Path, res: Calibration, setup: Setup, base: Scenario) -> None:
    """Tables, figures and ``calibration.md`` of a finished calibration."""
    import matplotlib.pyplot as plt

    res.samples.to_csv(out / "posterior_samples.csv", index=False)
    res.posterior.to_csv(out / "posterior.csv", index=False)
    res.generations.to_csv(out / "generations.csv", index=False)
    res.predictive.to_csv(out / "predictive.csv", index=False)
    pd.DataFrame({"target": list(res.coverage), "coverage": list(res.coverage.values())}).to_csv(
        out / "coverage.csv", index=False
    )
    res.scale.to_csv(out / "scale.csv", index=False)
    lines = ["# The posterior median (ABC-SMC; fishschool calibrate)", "", "[uncertainties]"]
    lines += [f"{k} = {v}" for k, v in res.median.items()]
    (out / "calibrated.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    names = list(setup.priors)
    fig = pairs_figure(res.samples, setup)
    fig.savefig(out / "pairs.png", dpi=80)
    plt.close(fig)
    fig = predictive_figure(res.predictive, res.coverage, setup)
    fig.savefig(out / "predictive.png")
    plt.close(fig)

    ess = effective_sample_size(res.samples.weight)
    rough = ess < 0.2 * len(res.samples)  # a few particles carry the weight: no notes
    post = ["| parameter | prior | 5% | median | 95% | note |", "|---|---|---|---|---|---|"]
    for r in res.posterior.itertuples(index=False):
        span = r.prior_high - r.prior_low
        note = ""
        if rough:
            pass
        elif r.median - r.prior_low < 0.05 * span or r.prior_high - r.median < 0.05 * span:
            note = "median at a prior bound: the prior limits the fit"
        elif (r.q95 - r.q05) > 0.8 * span:
            note = "barely narrowed: the targets say little about it"
        post.append(
            f"| `{r.parameter}` | {r.prior_low:g}-{r.prior_high:g} | {r.q05:.3g} | "
            f"{r.median:.3g} | {r.q95:.3g} | {note} |"
        )
    pred = [
        "| id | pattern | target | predictive 5%-95% | median | coverage | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in setup.targets:
        v = res.predictive[t.id].replace([np.inf, -np.inf], np.nan).dropna()
        if v.empty:
            target = f"{t.low:g}-{t.high:g}"
            pred.append(f"| {t.id} | {t.pattern} | {target} | - | - | 0% | unmeasured |")
            continue
        q05, med, q95 = v.quantile([0.05, 0.5, 0.95])
        cov = res.coverage[t.id]
        reading = (
            "met"
            if cov >= 0.5
            else f"missed: the posterior predicts {'below' if med < t.low else 'above'} the range"
            if not (t.low <= med <= t.high)
            else "met by the median, spread wide"
        )
        pred.append(
            f"| {t.id} | {t.pattern} | {t.low:g}-{t.high:g} | {q05:.3g}-{q95:.3g} | {med:.3g} | "
            f"{cov:.0%} | {reading} |"
        )
    scale = [
        "| id | calibration size (+/- se) | 100,000 consumers (+/- se) | ratio | agrees |",
        "|---|---|---|---|---|",
    ]
    for r in res.scale.itertuples(index=False):
        scale.append(
            f"| {r.target} | {r.small:.3g} +/- {r.small_se:.2g} | {r.large:.3g} +/- "
            f"{r.large_se:.2g} | {r.ratio:.2f} | {'yes' if r.agrees else '**no**'} |"
        )
    g = res.generations
    caveat = ": few particles carry the posterior, so its quantiles are rough" if rough else ""
    distinct = res.predictive.particle.nunique() if "particle" in res.predictive else 0
    steps = [
        f"- generation {int(r.t) + 1}: epsilon {r.epsilon:.3g}, {int(r.samples)} simulated for "
        f"{int(r.particles)} accepted, effective sample size {r.effective_sample_size:.0f}"
        for r in g.itertuples()
    ]
    tens = tensions(res.predictive, res.coverage, setup)
    tension_text = (
        "No missed target moves with another."
        if tens.empty
        else "\n".join(
            [
                "| missed | needs to move | with | rho | its implied shift | its room | conflict |",
                "|---|---|---|---|---|---|---|",
            ]
            + [
                f"| {r.missed} | {r.needs} | {r.partner} | {r.rho:+.2f} | {r.implied:+.2f} | "
                f"{r.room:+.2f} | {'**yes**' if r.conflict else 'no'} |"
                for r in tens.itertuples()
            ]
        )
    )
    tens.to_csv(out / "tensions.csv", index=False)
    p = base.params
    text = f"""# Calibration report

ABC-SMC (pyabc) over {len(names)} uncertain parameters with uniform priors
(`docs/calibration/targets.toml`): {len(g)} generations of {int(g.particles.iloc[-1])} particles,
{res.simulations:,} particles simulated in all (the prior sample that set the first tolerance
included), each the mean of its replicates on seeds of its own ({p.world.consumers:,} consumers,
{p.owners.count:,} owners, {p.world.days} days); final tolerance epsilon = {g.epsilon.iloc[-1]:.3g}.
The last generation's weights have an effective sample size of {ess:.1f} particles (Kish: 1 / sum
of squared weights){caveat}. With several processes pyabc seeds its workers itself, so a rerun
gives another sample of the same posterior, not the same particles: `abc.db` is the record.

## Posterior (weighted quantiles of the last generation)

{chr(10).join(post)}

![pairs](pairs.png)

## Posterior predictive check

{len(res.predictive)} draws by weight (systematic resampling; {distinct} distinct particles), each
the mean of as many runs as a particle's fit, on fresh seeds; a draw that cannot measure a
pattern misses it.

{chr(10).join(pred)}

![predictive](predictive.png)

## Tensions: what moves with a missed target

For each missed target, the targets that tend to move with it across the predictive draws
(Spearman's rho; targets sharing a metric left out), the shift that would come with bringing its
median to its range (least-squares slope) and the room they have for it, both in widths of their
own range. A conflict (shift beyond the room) hints that the two patterns pull the parameters
apart; a correlation across draws mixes parameter trade-offs with seed noise.

{tension_text}

## Scale check (the posterior median at the calibration size and at the shipped scale)

{chr(10).join(scale) if len(res.scale) else "Not run."}

## Generations

{chr(10).join(steps)}
"""
    (out / "calibration.md").write_text(text, encoding="utf-8")


def tensions(
    predictive: pd.DataFrame, coverage: Mapping[str, float], setup: Setup, min_rho: float = 0.3
) -> pd.DataFrame:
    """Why a target is missed: the targets that tend to move with it across the posterior
    predictive draws.

    For each target met in less than half the draws whose predictive median lies outside its
    range, the shift that would bring the median to the range's nearest bound; for every other
    target correlated with it (Spearman's rho at least ``min_rho`` in size; targets built on a
    common metric are left out: their correlation is arithmetic), the shift that would come
    with it (the least-squares slope across draws times that shift) and the room the partner
    has in that direction (from its predictive median to its bound), both in widths of the
    partner's range. ``conflict``: the implied shift exceeds the room. A correlation across
    draws is a hint, not a proof: it mixes parameter trade-offs with seed noise.

    Returns ``missed, needs, partner, rho, implied, room, conflict`` (one row per pair).
    """
    rows = []
    values = predictive.replace([np.inf, -np.inf], np.nan)
    by_id = {t.id: t for t in setup.targets}

    def measures(t: Target) -> set[tuple[str, str]]:
        return {(t.channel, m) for m in setup.derived.get(t.metric, (t.metric,))}

    for t in setup.targets:
        if coverage.get(t.id, 0.0) >= 0.5 or values[t.id].dropna().empty:
            continue
        med = values[t.id].median()
        shift = t.low - med if med < t.low else t.high - med if med > t.high else 0.0
        if shift == 0.0:
            continue
        for other in setup.targets:
            if other.id == t.id or measures(t) & measures(other):
                continue
            both = values[[t.id, other.id]].dropna()
            if len(both) < 10 or both[other.id].nunique() < 2 or both[t.id].nunique() < 2:
                continue
            rho = float(both[t.id].rank().corr(both[other.id].rank()))
            if abs(rho) < min_rho:
                continue
            slope = float(np.polyfit(both[t.id], both[other.id], 1)[0])
            o, omed = by_id[other.id], both[other.id].median()
            width = o.high - o.low
            implied = slope * shift / width
            room = (o.high - omed) / width if implied > 0 else (omed - o.low) / width
            rows.append(
                (
                    t.id,
                    "up" if shift > 0 else "down",
                    other.id,
                    rho,
                    implied,
                    room,
                    bool(abs(implied) > room),
                )
            )
    columns = ["missed", "needs", "partner", "rho", "implied", "room", "conflict"]
    return pd.DataFrame(rows, columns=columns)


def pairs_figure(samples: pd.DataFrame, setup: Setup):
    """Marginals and pairwise scatter of the posterior particles (point size by weight)."""
    import matplotlib.pyplot as plt

    names = list(setup.priors)
    k = len(names)
    fig, axes = plt.subplots(k, k, figsize=(1.6 * k, 1.6 * k), squeeze=False)
    size = 4 + 60 * samples.weight / samples.weight.max()
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ax = axes[i][j]
            ax.tick_params(labelsize=5)
            if i == j:
                ax.hist(samples[a], bins=15, weights=samples.weight, color="#1b9e77")
                ax.set_xlim(*setup.priors[a])
            elif i > j:
                ax.scatter(samples[b], samples[a], s=size, alpha=0.4, color="#1b9e77", lw=0)
                ax.set_xlim(*setup.priors[b])
                ax.set_ylim(*setup.priors[a])
            else:
                ax.set_axis_off()
            if i == k - 1:
                ax.set_xlabel(b, fontsize=6)
            if j == 0:
                ax.set_ylabel(a, fontsize=6)
    fig.suptitle("Posterior particles over the prior ranges (size: weight)")
    fig.tight_layout()
    return fig


def predictive_figure(pred: pd.DataFrame, coverage: Mapping[str, float], setup: Setup):
    """Each pattern's posterior predictive distribution against its target range."""
    import matplotlib.pyplot as plt

    k = len(setup.targets)
    cols = 4
    rows = (k + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(14, 3 * rows))
    for ax, t in zip(np.ravel(axes), setup.targets, strict=False):
        v = pred[t.id].replace([np.inf, -np.inf], np.nan).dropna()
        if len(v):
            ax.hist(v, bins=20, color="#7570b3")
        ax.axvspan(t.low, t.high, color="orange", alpha=0.25, label="target")
        ax.set_title(f"{t.id}: {t.pattern} ({coverage[t.id]:.0%} inside)", fontsize=8)
    for ax in np.ravel(axes)[k:]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig
