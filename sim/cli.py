"""The ``fishschool`` command line.

    fishschool run [SCENARIO] [--replicates N] [--seed S] [--workers K] [--out DIR] [--set K=V]
    fishschool compare A B [...] [same options] [--explain [--explain-replicates N]]
    fishschool validate SCENARIO...
    fishschool list
    fishschool report DIR
    fishschool viz [SCENARIO] [--consumers N] [--port P]
    fishschool explain A B [--channel CH] [--metric M ...] [--replicates N] [same options]
    fishschool explain SCENARIO --channels owners streamer [...]
    fishschool scale [--sizes N,N,...] [--replicates N] [--days D] [--seed S] [--workers K]
    fishschool optimize OPT.toml [--set K=V] [--workers K] [--scheduler ADDR] [--out DIR]
    fishschool recruit [SCENARIO] [--rules R ...] [--replicates N] [--wave-day D] [--out DIR]

``run`` and ``compare`` run replicates in parallel processes, print the channels side by side
with 95% intervals (``compare`` adds paired differences on common random numbers) and write a
results folder with a report. A SCENARIO is a TOML file or the name of a shipped scenario
(``fishschool list``); without one, ``run`` uses the model's defaults. ``explain`` splits the
difference between two scenarios, or between two channels of one scenario, into mechanism groups
with exact Shapley values (:mod:`analysis.explain`). ``compare --explain`` explains, after the
comparison, each compared scenario in which owners and the streamer both sell (channel mode,
``--channels owners streamer``); if none has both, the first scenario against each other one
(scenario mode). The explanations go into ``explain/NAME/`` of the results folder and into its
report ("Why they differ"). ``scale`` runs the model's defaults at several world sizes, owners
scaled with consumers, and reports every rate per size with intervals and whether it depends
on the size (:mod:`analysis.scale`). ``optimize`` searches the levers of an optimisation file
for the mixes that do best across the uncertainty (NSGA-II on common random numbers, resumable
like a sweep; :mod:`sim.experiments.optimize`) and recommends a robust one
(:mod:`analysis.optimize`). ``recruit`` compares the recruitment rules (which consumers become
the first owners) on the same graph, budget of owners and seeds, with and without an owner
churn wave (:mod:`analysis.recruitment`).

Bad input (a scenario or override that does not validate, a number out of range, a missing or
damaged file, an output folder that exists or cannot be written, a world too large for the
memory) prints one line naming the file, option or key and what is allowed, exits with status 2
and writes nothing; all of it is checked before any run starts. Numbers are read by one type
function per kind (:func:`positive_int`, :func:`seed_int`, ...), so every command takes the
same range for the same option. ``--force`` replaces only a folder whose manifest.json says
fishschool wrote it (:func:`sim.experiments.output.check_destination`). Ctrl-C prints ``fishschool:
interrupted`` and exits with status 130, leaving no half-written output.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sim import __version__
from sim.experiments.engine import check_scheduler, default_workers, executor_for
from sim.experiments.sweep import is_sweep_file, load_sweep
from sim.world.params import ParameterError, field_of

RESULTS = Path("results")
LABEL_MAX = 120  # characters of a default folder name before its time stamp


# ----------------------------------------------------------------------------------------------
# Options: one type function per kind of number, so each option has one range everywhere
# ----------------------------------------------------------------------------------------------
class UsageError(Exception):
    """A command line argparse rejects; main prints it as one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (``fishschool: error: ...``) and main's status 2
    rather than a usage block and SystemExit."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --replicate is a typo, not --replicates
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        m = re.fullmatch(r"argument ([^:]+): (\S+.*(?:is outside|is not a)\b.*)", message, re.S)
        raise UsageError(f"{m[1]} {m[2]}" if m else f"{message} (see {self.prog} --help)")


def int_in(
    lo: int, hi: int | None, what: str, name: str, key: str | None = None
) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi] (``hi`` None: no upper bound); ``key``
    names the scenario key or parameter the option sets, for the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not a whole number ({what})") from None
        if value < lo or (hi is not None and value > hi):
            bounds = f"[{lo}, {hi}]" if hi is not None else f"[{lo}, ...)"
            shown = f"{text}: {key} = {value}" if key else text
            raise argparse.ArgumentTypeError(
                f"{shown} is outside the allowed range {bounds} ({what})"
            )
        return value

    parse.__name__ = name
    return parse


def _param_int(dotted: str, name: str, key: str | None) -> Callable[[str], int]:
    """An argparse type with the range and description of a model parameter."""
    meta = field_of(dotted).metadata
    return int_in(meta["lo"], meta["hi"], meta["doc"].rstrip("."), name, key)


def _scenario_limits(key: str) -> tuple[int, int]:
    from sim.experiments.scenario import LIMITS

    return LIMITS[key]


def sizes_list(text: str) -> list[int]:
    """An argparse type: world sizes in consumers, comma-separated (10000,100000), each in
    the range of ``world.consumers``, each once; returned in increasing order."""
    meta = field_of("world.consumers").metadata
    lo, hi = meta["lo"], meta["hi"]
    what = f"consumers per world, comma-separated, each in [{lo}, {hi}]"
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text} is not a list of sizes ({what})")
    sizes = []
    for p in parts:
        try:
            n = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text}: {p} is not a whole number ({what})"
            ) from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(
                f"{text}: {p} is outside the allowed range [{lo}, {hi}] (consumers per world)"
            )
        sizes.append(n)
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text} is not a list of distinct sizes ({what})")
    return sorted(sizes)


def _scenario_int(key: str, what: str) -> Callable[[str], int]:
    """An argparse type with the range of a scenario's top key (replicates, seed)."""
    from sim.experiments.scenario import LIMITS

    return int_in(*LIMITS[key], what, f"{key}_int", key)


positive_int = int_in(1, None, "a count", "positive_int")
replicates_int = _scenario_int("replicates", "replicates per scenario")
seed_int = _scenario_int("seed", "a base seed")
days_int = _param_int("world.days", "days_int", "world.days")
consumers_int = _param_int("world.consumers", "consumers_int", "world.consumers")
owners_int = _param_int("owners.count", "owners_int", "levers.owners.count")
view_consumers_int = _param_int("world.consumers", "view_consumers_int", None)  # viz: no --set
port_int = int_in(1, 65535, "a TCP port", "port_int")
study_replicates_int = int_in(
    2, _scenario_limits("replicates")[1], "replicates per size; an interval needs two", "reps"
)
wave_day_int = _param_int("events.churn_wave_day", "wave_day_int", "events.churn_wave_day")
paired_replicates_int = int_in(
    2, _scenario_limits("replicates")[1], "replicates; an interval needs two", "paired_reps"
)
population_int = int_in(10, 100_000, "particles", "population_int")
generations_int = int_in(1, 100, "generations", "generations_int")


def share_float(what: str, name: str) -> Callable[[str], float]:
    """An argparse type: a share in (0, 1]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not a number ({what})") from None
        if not 0.0 < value <= 1.0:  # NaN fails too
            raise argparse.ArgumentTypeError(f"{text} is outside the allowed range (0, 1] ({what})")
        return value

    parse.__name__ = name
    return parse


wave_share_float = share_float("share of active owners quitting in the wave", "wave_share_float")


def scheduler_address(text: str) -> str:
    """An argparse type: a Dask scheduler address, SCHEME://HOST[:PORT]."""
    try:
        return check_scheduler(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class Progress:
    """A one-line progress report on stderr: runs done, rate and time left."""

    def __init__(self, unit: str, enabled: bool = True) -> None:
        self.unit = unit
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.reused = 0  # work found done at the start (a resumed sweep): not part of the rate

    def __call__(self, done: int, total: int, failed: int = 0) -> None:
        if not self.enabled:
            return
        fresh = done - self.reused
        elapsed = time.perf_counter() - self.t0
        rate = fresh / elapsed if elapsed > 0 and fresh > 0 else 0.0
        left = f"{(total - done) / rate:.0f}s left" if rate > 0 else "-"
        bar = "#" * int(20 * done / max(total, 1))
        line = (
            f"[{bar:<20}] {done}/{total} {self.unit}"
            + (f", {failed} failed" if failed else "")
            + f"  {rate * 60:.1f} {self.unit}/min  {left}"
        )
        end = "\n" if done == total or not self.tty else ""
        print(f"\r{line}", end=end, file=sys.stderr, flush=True)


def _sets_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable), the same for every command that loads scenarios."""
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override {what} (repeatable)",
    )


def _executor_options(
    p: argparse.ArgumentParser, workers: str = "local processes (default: all cores)"
) -> None:
    """``--workers N`` and ``--scheduler ADDRESS``: where the runs of a command go (the same for
    every command that runs through the engine)."""
    p.add_argument("--workers", type=positive_int, help=workers)
    p.add_argument(
        "--scheduler",
        type=scheduler_address,
        help="a Dask scheduler, e.g. tcp://host:8786 (default: $DASK_SCHEDULER_ADDRESS, "
        "else local processes)",
    )


def _experiment_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replicates", type=replicates_int, help="replicates per scenario (default: the file's)"
    )
    p.add_argument("--seed", type=seed_int, help="base seed (default: the first scenario's)")
    _executor_options(p)
    p.add_argument("--out", type=Path, help="results folder (default: results/NAME-TIME)")
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="M",
        help="summary metrics to print (default: a chosen set); every metric is in summary.csv",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing results folder (only one fishschool wrote)",
    )
    _sets_option(p, "a scenario key, e.g. levers.owners.commission=0.2")
    p.add_argument(
        "--posterior",
        type=Path,
        help="a calibration's posterior_samples.csv: each replicate draws its uncertain "
        "parameters from it",
    )
    p.add_argument("--no-report", action="store_true", help="tables only: no figures or report")
    p.add_argument("--quiet", action="store_true", help="no progress or table")


def _size_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--consumers", type=consumers_int, help="shorthand for --set world.consumers=N")
    p.add_argument("--owners", type=owners_int, help="shorthand for --set levers.owners.count=N")
    p.add_argument("--days", type=days_int, help="shorthand for --set world.days=N")


def _size_sets(args: argparse.Namespace) -> list[str]:
    """``--set`` plus the shorthands --consumers, --owners and --days."""
    sets = list(args.sets)
    if args.consumers is not None:
        sets.append(f"world.consumers={args.consumers}")
    if args.owners is not None:
        sets.append(f"levers.owners.count={args.owners}")
    if args.days is not None:
        sets.append(f"world.days={args.days}")
    return sets


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fishschool",
        description="Social-commerce simulation: owner networks versus a mega-streamer.",
    )
    parser.add_argument("--version", action="version", version=f"fishschool {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one scenario over its replicates")
    r.add_argument("scenario", nargs="?", help="scenario file or shipped name (default: defaults)")
    r.add_argument("--config", type=Path, help="scenario file (same as SCENARIO)")
    _size_options(r)
    _experiment_options(r)

    c = sub.add_parser("compare", help="run scenarios on common random numbers, side by side")
    c.add_argument("scenarios", nargs="+", help="two or more scenario files or shipped names")
    _size_options(c)
    _experiment_options(c)
    c.add_argument(
        "--explain",
        action="store_true",
        help="then split the differences into mechanism groups (as fishschool explain): "
        "owners versus streamer in each scenario where both sell, else the first scenario "
        "versus each other one; into explain/ and the report",
    )
    c.add_argument(
        "--explain-replicates",
        type=positive_int,
        metavar="N",
        help="replicates per coalition of the explanation (default: the comparison's)",
    )

    v = sub.add_parser("validate", help="check scenario or sweep files without running them")
    v.add_argument("scenarios", nargs="+")
    _sets_option(v, "a key of every scenario checked")

    sub.add_parser("list", help="the shipped scenarios and the questions they answer")

    rep = sub.add_parser("report", help="redraw the figures and report of a results folder")
    rep.add_argument("folder", type=Path)

    sw = sub.add_parser("sweep", help="run (or resume) a parameter sweep")
    sw.add_argument("sweep", type=Path, help="sweep file (TOML)")
    _sets_option(sw, "a key the sweep holds fixed, e.g. world.consumers=2000")
    _executor_options(sw)
    sw.add_argument("--out", type=Path, help="sweep folder (default: results/sweep-NAME)")
    sw.add_argument(
        "--yes", action="store_true", help="run a sweep above the limit of planned runs"
    )
    sw.add_argument("--quiet", action="store_true")

    op = sub.add_parser(
        "optimize",
        help="search the levers for robust mixes across the uncertainty (NSGA-II, resumable)",
        description="Search the levers an optimisation file gives ranges for (NSGA-II), every "
        "mix run on the same uncertainty samples and seeds; write the Pareto set, the "
        "recommended robust mix (smallest maximum regret) and what flips it. Running the same "
        "command again resumes: finished runs are never recomputed.",
    )
    op.add_argument("optimization", type=Path, metavar="OPT", help="optimisation file (TOML)")
    _sets_option(
        op,
        "a key held fixed or a setting of the file, e.g. world.consumers=2000, "
        "search.generations=2, samples.count=4",
    )
    _executor_options(op)
    op.add_argument("--out", type=Path, help="optimisation folder (default: results/optimize-NAME)")
    op.add_argument(
        "--dry-run", action="store_true", help="check the file and print the plan; run nothing"
    )
    op.add_argument("--quiet", action="store_true", help="no progress or report")

    ca = sub.add_parser(
        "calibrate", help="fit uncertain parameters to the brief's patterns (ABC-SMC, resumable)"
    )
    ca.add_argument(
        "--targets",
        type=Path,
        help="targets and priors (TOML; default docs/calibration/targets.toml)",
    )
    ca.add_argument(
        "--population", type=population_int, default=200, help="particles a generation (200)"
    )
    ca.add_argument(
        "--generations", type=generations_int, default=6, help="ABC-SMC generations (6)"
    )
    ca.add_argument("--consumers", type=consumers_int, default=10_000)
    ca.add_argument("--days", type=days_int, default=120)
    ca.add_argument("--seed", type=seed_int, default=2026)
    ca.add_argument(
        "--replicates", type=replicates_int, default=2, help="runs a particle, fresh seeds (2)"
    )
    ca.add_argument(
        "--predictive", type=population_int, default=100, help="posterior predictive draws (100)"
    )
    ca.add_argument(
        "--no-scale-check", action="store_true", help="skip the run of the median at 100,000"
    )
    _executor_options(ca)
    ca.add_argument("--out", type=Path, default=RESULTS / "calibration")
    ca.add_argument("--quiet", action="store_true")

    vm = sub.add_parser("validate-model", help="docking, direction checks, patterns: a report")
    vm.add_argument("--size", choices=("small", "full"), default="full")
    vm.add_argument("--out", type=Path, default=Path("docs/VALIDATION.md"))
    vm.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="a fishschool calibrate folder: its coverage, scale check and posterior (for the "
        "verdict across posterior draws); default docs/calibration",
    )
    vm.add_argument("--workers", type=positive_int, help="local processes (default: all cores)")

    an = sub.add_parser("analyze", help="sensitivity and robustness analysis of a sweep")
    an.add_argument("folder", type=Path)

    ex = sub.add_parser(
        "explain",
        help="split a difference into mechanism groups (exact Shapley values)",
        description="Scenario mode (explain A B): split B - A of each metric into the mechanism "
        "groups in which the scenarios' parameters differ. Channel mode (explain SCENARIO "
        "--channels A B): split metric(A) - metric(B) within one scenario by counterfactual "
        "swaps; what they cannot explain is the part 'structure'.",
    )
    ex.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="A B, or one with --channels")
    ex.add_argument(
        "--channels",
        nargs=2,
        metavar=("A", "B"),
        help="channel mode: explain metric(A) - metric(B) within one scenario",
    )
    ex.add_argument(
        "--channel",
        action="extend",
        nargs="+",
        metavar="CH",
        help="scenario mode: channels to report: owners, streamer, conventional, all "
        "(default: every one)",
    )
    ex.add_argument(
        "--metric",
        dest="metrics",
        action="extend",
        nargs="+",
        metavar="M",
        help="summary metrics (default: return_rate conversion profit_per_order)",
    )
    _size_options(ex)
    ex.add_argument(
        "--replicates", type=replicates_int, help="replicates per coalition (default: the file's)"
    )
    ex.add_argument("--seed", type=seed_int, help="base seed (default: the first scenario's)")
    ex.add_argument("--workers", type=positive_int, help="parallel processes (default: all cores)")
    ex.add_argument("--out", type=Path, help="results folder (default: results/explain-...-TIME)")
    ex.add_argument(
        "--force",
        action="store_true",
        help="replace an existing results folder (only one fishschool wrote)",
    )
    _sets_option(ex, "a key of every scenario, e.g. streamer.discount=0.2")
    ex.add_argument("--quiet", action="store_true", help="no progress or table")

    sc = sub.add_parser(
        "scale",
        help="the defaults at several world sizes: every rate per size, with intervals",
        description="Run the model's defaults at each size, owners scaled with consumers "
        "(followers are a share of consumers, members follow the owners' groups), and report "
        "every rate metric per size and channel with 95% intervals, and whether it depends "
        "on the size: scale.csv, dependence.csv, runs.csv, scale.png, scale.md, manifest.json.",
    )
    sc.add_argument(
        "--sizes",
        type=sizes_list,
        metavar="N,N,...",
        help="world sizes in consumers (default 10000,100000,1000000,10000000)",
    )
    sc.add_argument(
        "--replicates",
        type=study_replicates_int,
        help="replicates at every size (default: 16 up to 10,000 consumers, half as many for "
        "every tenfold size, at least 4: 16, 8, 4, 4)",
    )
    sc.add_argument(
        "--days",
        type=days_int,
        help="simulated days (default 120, the defaults' and the shipped scenarios' length; "
        "the benchmark's 90 days are too few for repeat purchase, which follows buyers for 90 "
        "days)",
    )
    sc.add_argument(
        "--seed", type=seed_int, help="base seed; each size's seeds derive from it (default 1)"
    )
    _executor_options(
        sc,
        "local processes (default: all cores; a size too large to run that many at once runs "
        "as many as fit in memory)",
    )
    sc.add_argument(
        "--out", type=Path, default=RESULTS / "scale", help="results folder (default results/scale)"
    )
    sc.add_argument(
        "--force",
        action="store_true",
        help="replace an existing results folder (only one fishschool scale wrote)",
    )
    sc.add_argument("--quiet", action="store_true", help="no progress or table")

    rc = sub.add_parser(
        "recruit",
        help="compare the recruitment rules on the same graph, owners and seeds",
        description="Run each recruitment rule (owners.recruitment: which consumers become the "
        "first owners) on the same world, budget of owners and replicate seeds, each with and "
        "without an owner churn wave, and report per rule with 95% intervals: the owners' "
        "reach share, orders per owner, the first owners' earnings Gini and what the wave "
        "costs; paired differences against the first rule. Writes recruitment.csv, runs.csv, "
        "daily.csv, recruitment.png, recruitment.md and manifest.json.",
    )
    rc.add_argument(
        "scenario",
        nargs="?",
        help="scenario file or shipped name (default: the calibration's world, the defaults "
        "at 10,000 consumers, 50 owners, 120 days)",
    )
    rc.add_argument(
        "--consumers",
        type=consumers_int,
        help="consumers (without SCENARIO, owners scale with them, one per 200; with one, "
        "shorthand for --set world.consumers=N)",
    )
    rc.add_argument(
        "--owners", type=owners_int, help="the budget of owners (--set levers.owners.count=N)"
    )
    rc.add_argument("--days", type=days_int, help="simulated days (default: 120 or the file's)")
    rc.add_argument(
        "--rules",
        nargs="+",
        metavar="RULE",
        help="rules to compare, the first the baseline of the differences (default: random "
        "degree communities celf)",
    )
    rc.add_argument(
        "--replicates",
        type=paired_replicates_int,
        help="replicates, on seeds every rule and arm shares (default 16)",
    )
    rc.add_argument(
        "--seed", type=seed_int, help="base seed (default: the file's, or 1 without a file)"
    )
    rc.add_argument(
        "--wave-day",
        type=wave_day_int,
        help="day of the owner churn wave (default: the file's, else 30)",
    )
    rc.add_argument(
        "--wave-share",
        type=wave_share_float,
        help="share of active owners quitting in the wave (default: the file's, else 0.5)",
    )
    _sets_option(rc, "a key of the study's world, e.g. owners.commission=0.2")
    _executor_options(rc)
    rc.add_argument(
        "--out",
        type=Path,
        help="results folder, must not exist (default: results/recruit-NAME-TIME)",
    )
    rc.add_argument("--quiet", action="store_true", help="no progress or table")

    vz = sub.add_parser("viz", help="watch a run in the browser (Mesa SolaraViz on localhost)")
    vz.add_argument("scenario", nargs="?", help="scenario file or shipped name (default: hybrid)")
    vz.add_argument(
        "--consumers",
        type=view_consumers_int,
        default=4000,
        help="consumers in the view's world, owners scaled with them (default 4000)",
    )
    _sets_option(vz, "a key of the view's scenario")
    vz.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    vz.add_argument("--port", type=port_int, default=8765, help="port (default 8765)")
    vz.add_argument("--no-open", action="store_true", help="do not open a browser window")
    return parser


def _load_scenarios(names: Sequence[str | None], sets: Sequence[str]):
    from sim.experiments.scenario import default, load

    return [load(n, sets) if n is not None else default(sets) for n in names]


def _default_out(label: str) -> Path:
    """results/LABEL-TIME, LABEL cut to a length every file system takes."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return RESULTS / f"{label[:LABEL_MAX]}-{stamp}"


def _plan_workers(args: argparse.Namespace, params: list, runs: int, what: str) -> int:
    """Local processes for ``runs`` runs (:func:`sim.experiments.resources.plan_workers`)."""
    from sim.experiments.resources import plan_workers

    workers, note = plan_workers(args.workers, params, runs, what)
    if note and not getattr(args, "quiet", False):
        print(f"fishschool: note: {note}", file=sys.stderr)
    return workers


def _run_and_write(
    args: argparse.Namespace, scenarios, label: str, explain: Sequence[tuple[str, list]] = ()
) -> int:
    """Check the destination and the memory, run the experiment (and, for ``compare
    --explain``, the explanations of ``explain``), then write the results folder atomically."""
    from analysis.explain import explain_plan, format_explanation
    from analysis.report import (
        TABLE_METRICS,
        channel_duel,
        comparison_table,
        distinct_draws,
        duel_shares,
        write_results,
    )
    from sim.experiments.experiment import run_experiment
    from sim.experiments.output import check_destination
    from sim.world.metrics import SUMMARY_METRICS

    shown = tuple(args.metrics) if getattr(args, "metrics", None) else TABLE_METRICS
    unknown = [m for m in shown if m not in SUMMARY_METRICS]
    if unknown:
        raise ParameterError(
            f"--metrics {' '.join(unknown)}: not a summary metric; allowed: "
            + ", ".join(SUMMARY_METRICS)
        )
    out = check_destination(args.out or _default_out(label), args.force)
    posterior = None
    if getattr(args, "posterior", None) is not None:
        from sim.experiments.calibration import load_posterior_samples

        posterior = load_posterior_samples(args.posterior)
    first = scenarios[0]
    replicates = args.replicates or first.replicates
    runs = replicates * len(scenarios) if not explain else sys.maxsize  # coalitions: many
    workers = _plan_workers(args, [s.params for s in scenarios], runs, "a run")
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    w = first.params.world
    say(
        f"fishschool {__version__}: {', '.join(s.name for s in scenarios)}; "
        f"{replicates} replicates each, {w.consumers:,} consumers, {w.days} days"
    )
    # One executor for the comparison and its explanations; Ctrl-C stops its processes.
    with executor_for(workers, args.scheduler) as (executor, _):
        exp = run_experiment(
            scenarios,
            replicates=args.replicates,
            seed=args.seed,
            workers=workers,
            executor=executor,
            progress=Progress("runs", not args.quiet),
            posterior=posterior,
        )
        table = comparison_table(exp.summary, exp.names, shown)
        if explain and not args.quiet:  # the comparison first: the explanations take longer
            print(table.to_string(), flush=True)
        reps = getattr(args, "explain_replicates", None) or len(exp.seeds)  # its first seeds
        explanations = explain_plan(
            explain,
            replicates=reps,
            seed=exp.seed,
            executor=executor,
            progress=lambda: Progress("runs", not args.quiet),
            announce=lambda what: say(f"{what}: {reps} replicates per coalition"),
        )
    command = ["fishschool", *sys.argv[1:]]
    write_results(out, exp, explanations, command, force=args.force, report=not args.no_report)
    if not args.quiet:
        if not explain:
            print(table.to_string())
        if posterior is not None:
            duel = channel_duel(exp.summary, shown)
            if not duel.empty:
                print(
                    f"\nAcross {len(exp.seeds)} posterior draws ({distinct_draws(exp.draws or [])} "
                    "distinct particles), owners beat the streamer in (share, 95% interval):\n"
                    + duel_shares(duel).to_string(index=False)
                )
        for _, expl in explanations:
            print("\n" + format_explanation(expl))
        runs = exp.timings["runs"] + sum(e.timings["runs"] for _, e in explanations)
        wall = exp.timings["wall_s"] + sum(e.timings["wall_s"] for _, e in explanations)
        print(
            f"\n{len(shown)} of {len(SUMMARY_METRICS)} metrics shown (--metrics to choose); "
            f"every metric is in {out / 'summary.csv'}."
        )
        print(
            f"{runs} runs in {wall:.1f}s "
            f"on {exp.timings['workers']} worker(s). Results in {out}/"
            + ("" if args.no_report else f" (report: {out / 'report.html'})")
            + (f", explanations in {out / 'explain'}/" if explanations else "")
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.scenario and args.config:
        raise ParameterError("give the scenario either as SCENARIO or as --config, not both")
    name = args.scenario or (str(args.config) if args.config else None)
    scenarios = _load_scenarios([name], _size_sets(args))
    return _run_and_write(args, scenarios, scenarios[0].name)


def cmd_compare(args: argparse.Namespace) -> int:
    if len(args.scenarios) < 2:
        raise ParameterError("compare needs at least two scenarios")
    scenarios = _load_scenarios(args.scenarios, _size_sets(args))
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ParameterError(f"compare needs scenarios with different names, got {names}")
    sizes = {(s.params.world.consumers, s.params.world.days) for s in scenarios}
    if len(sizes) > 1:
        print(
            "fishschool: warning: the scenarios differ in world size or days; "
            "their replicates are paired but do not share worlds",
            file=sys.stderr,
        )
    if args.explain_replicates is not None and not args.explain:
        raise ParameterError("--explain-replicates is for --explain: add --explain")
    from analysis.explain import compare_plan

    plan = compare_plan(scenarios) if args.explain else []
    return _run_and_write(args, scenarios, "compare-" + "-vs-".join(names), plan)


def cmd_validate(args: argparse.Namespace) -> int:
    from sim.experiments.optimize import is_optimization_file, load_optimization
    from sim.experiments.scenario import load

    status = 0
    for name in args.scenarios:
        try:
            if is_optimization_file(name):
                opt = load_optimization(name, args.sets)
                print(
                    f"ok  optimisation {opt.name}: {len(opt.levers)} levers, "
                    f"{len(opt.objectives)} objectives, risk {opt.measure}, {opt.samples} "
                    f"samples, {opt.population} x {opt.generations} generations"
                )
                continue
            if is_sweep_file(name):
                sw = load_sweep(name, args.sets)
                print(
                    f"ok  sweep {sw.name}: {sw.design} design, {sw.samples} samples, "
                    f"{len(sw.factors)} factors, {sw.replicates} replicates, seed {sw.seed}"
                )
                continue
            s = load(name, args.sets)
        except ParameterError as err:
            print(f"fishschool: error: {err}", file=sys.stderr)
            status = 2
            continue
        w = s.params.world
        print(
            f"ok  {s.name}: {w.consumers:,} consumers, {s.params.owners.count:,} owners, "
            f"{w.days} days, "
            f"{s.replicates} replicates, seed {s.seed}"
        )
    return status


def cmd_list(args: argparse.Namespace) -> int:
    from sim.experiments.scenario import shipped, shipped_dir

    print(f"Shipped scenarios ({shipped_dir()}):")
    for s in shipped():
        print(f"  {s.name:<18} {s.question}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Redraw figures/, report.md and report.html of a results folder; every file it reads is
    checked first, and the new files replace the old ones only once all are drawn."""
    from analysis.report import Results, write_report
    from sim.experiments.atomic import replaced_entries
    from sim.experiments.output import check_writable, load_results

    res = Results(**load_results(args.folder))
    check_writable(args.folder / "report.html", "report", folder=False)
    with replaced_entries(args.folder, ("figures", "report.md", "report.html")) as stage:
        write_report(stage, res, source=args.folder)  # explanations stay in FOLDER/explain/
    print(f"Report redrawn: {args.folder / 'report.html'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from sim.experiments.output import check_writable
    from sim.experiments.sweep import check_out, check_size, largest_world, run_sweep

    sweep = load_sweep(args.sweep, args.sets)
    out = args.out or RESULTS / f"sweep-{sweep.name}"
    check_out(sweep, out)  # this sweep's folder, or a new or empty one
    check_writable(out)
    total = check_size(sweep, args.yes)
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    workers = args.workers
    if not scheduler and sweep.model == "fishschool":  # a cluster's memory is not ours to see
        workers = _plan_workers(args, [largest_world(sweep)], total, "a run of the sweep")
    progress = Progress("runs", not args.quiet)
    first = True

    def show_progress(done: int, failed: int, total: int) -> None:
        nonlocal first
        if first:  # the first report counts the runs a resumed sweep found done
            progress.reused, first = done, False
        progress(done, total, failed)

    with executor_for(workers, args.scheduler) as (executor, where):
        if not args.quiet:
            print(
                f"fishschool sweep {sweep.name}: {sweep.design} design, {len(sweep.factors)} "
                f"factors, {total} runs, on {where}; results in {out}/",
                file=sys.stderr,
            )
        report = run_sweep(sweep, out, executor, show_progress, allow_large=args.yes)
    if not args.quiet:
        print(
            f"{report.computed} runs computed, {report.skipped} already done, "
            f"{len(report.failures)} failed, in {report.wall_s:.1f}s. Data: {report.dataset}"
        )
    for f in report.failures:
        print(
            f"fishschool: run failed: {f['error']} at {f['point']} (seed {f['seed']})",
            file=sys.stderr,
        )
    return 1 if report.failures else 0


def cmd_optimize(args: argparse.Namespace) -> int:
    """Check the file, the folder and the memory, run (or resume) the search, then write the
    result files together and print the Pareto set and the recommendation."""
    from analysis.optimize import format_report, write_report
    from sim.experiments.optimize import (
        RunFailed,
        check_out,
        largest_world,
        load_optimization,
        run_optimization,
        write_results,
    )
    from sim.experiments.output import check_writable

    opt = load_optimization(args.optimization, args.sets)
    out = args.out or RESULTS / f"optimize-{opt.name}"
    check_out(opt, out)  # this optimisation's folder, or a new or empty one
    check_writable(out)
    total = opt.planned_runs
    plan = (
        f"{len(opt.levers)} levers, {len(opt.objectives)} objectives, risk {opt.measure}, "
        f"{opt.samples} samples; NSGA-II population {opt.population} x {opt.generations} "
        f"generations: at most {total} runs"
    )
    if args.dry_run:
        w = opt.base.params.world
        print(f"ok  optimize {opt.name}: {plan} ({w.consumers:,} consumers, {w.days} days)")
        return 0
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    workers = args.workers
    if not scheduler and opt.model == "fishschool":  # a cluster's memory is not ours to see
        workers = _plan_workers(args, [largest_world(opt)], total, "a run of the optimisation")
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    progress = Progress("runs", not args.quiet)

    def show_progress(done: int, total: int, reused: int) -> None:
        progress.reused = reused  # runs found stored: not part of the rate
        progress(done, total)

    with executor_for(workers, args.scheduler) as (executor, where):
        say(f"fishschool optimize {opt.name}: {plan}, on {where}; results in {out}/")
        try:
            result = run_optimization(opt, out, executor, show_progress, say)
        except RunFailed as err:
            print(f"fishschool: {err}", file=sys.stderr)
            return 1
    command = ["fishschool", *sys.argv[1:]]
    write_results(result, out, command, extra=write_report)
    if not args.quiet:
        print(format_report(result))
        print(f"Results in {out}/ (recommendation.md, pareto.png, pareto.csv, evaluations.csv)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from sim.experiments.calibration import calibrate, calibration_world, check_out, load_setup

    setup = load_setup(args.targets)
    out = check_out(args.out)
    world = calibration_world(args.consumers, args.days)
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    workers = args.workers
    if not scheduler:
        workers = _plan_workers(args, [world.params], sys.maxsize, "a calibration run")
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    with executor_for(workers, args.scheduler) as (executor, where):
        say(
            f"fishschool calibrate: ABC-SMC, {args.generations} generations of "
            f"{args.population} particles, {len(setup.priors)} parameters, "
            f"{len(setup.targets)} targets, on {where}; into {out}/"
        )
        res = calibrate(
            out,
            setup=setup,
            consumers=args.consumers,
            days=args.days,
            population=args.population,
            generations=args.generations,
            replicates=args.replicates,
            seed=args.seed,
            predictive=args.predictive,
            scale_consumers=None if args.no_scale_check else 100_000,
            executor=executor,
            workers=workers or 1,
            log=say,
        )
    met = sum(c >= 0.5 for c in res.coverage.values())
    print(
        f"{len(res.generations)} generations; posterior predictive: {met} of "
        f"{len(res.coverage)} targets met in at least half the draws. "
        f"Report: {out / 'calibration.md'}"
    )
    return 0


def cmd_validate_model(args: argparse.Namespace) -> int:
    from analysis.validation import check_destination, write_report
    from sim.experiments.calibration import docs_folder, load_posterior_samples

    out = check_destination(args.out)
    folder = args.calibration or docs_folder()
    if args.calibration is not None and not (folder / "posterior_samples.csv").is_file():
        raise ParameterError(
            f"--calibration {folder}: no posterior_samples.csv there (a fishschool calibrate "
            "folder holds one)"
        )
    if (folder / "posterior_samples.csv").is_file():
        load_posterior_samples(folder / "posterior_samples.csv", "--calibration")
    workers = args.workers or default_workers()
    path = write_report(out, args.size, folder, workers)
    print(f"Validation report: {path}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.sensitivity import analyze
    from sim.experiments.output import check_sweep_results, check_writable

    check_sweep_results(args.folder)
    check_writable(args.folder / "analysis")
    try:
        written = analyze(args.folder)
    except FileNotFoundError as err:
        raise ParameterError(str(err)) from None
    for path in written:
        print(path)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Validate everything, run the coalitions, then write explain.csv, runs.csv,
    manifest.json and explain.png atomically and print the table."""
    from analysis.explain import (
        DEFAULT_METRICS,
        check_channels,
        check_metrics,
        explain,
        format_explanation,
        write_explanation,
    )
    from sim.experiments.output import atomic_folder, check_destination
    from sim.experiments.scenario import load

    names = args.scenarios
    if args.channels:
        if len(names) != 1:
            raise ParameterError(
                f"explain --channels takes one scenario, got {len(names)}: {' '.join(names)}"
            )
        if args.channel:
            raise ParameterError("--channel is for explain A B; with --channels give no --channel")
    elif len(names) != 2:
        raise ParameterError(
            f"explain takes two scenarios (A B), or one with --channels A B; got {len(names)}"
        )
    metrics = check_metrics(args.metrics or DEFAULT_METRICS)
    channels = check_channels(args.channel)
    sets = _size_sets(args)
    scenarios = [load(n, sets, replicates=args.replicates, seed=args.seed) for n in names]
    label = "-vs-".join(args.channels) if args.channels else "-vs-".join(s.name for s in scenarios)
    if args.channels:
        label = f"{scenarios[0].name}-{label}"
    out = check_destination(args.out or _default_out(f"explain-{label}"), args.force)
    workers = _plan_workers(args, [s.params for s in scenarios], sys.maxsize, "a run")
    progress = Progress("runs", not args.quiet)
    with executor_for(workers, None) as (executor, where):
        expl = explain(
            scenarios,
            args.channels,
            metrics=metrics,
            channels=channels,
            executor=executor,
            progress=progress,
        )
    command = ["fishschool", *sys.argv[1:]]
    with atomic_folder(out, force=args.force, content="explanation") as tmp:
        write_explanation(expl, tmp, command)
    if not args.quiet:
        print(format_explanation(expl))
        print(
            f"\n{expl.timings['runs']} runs in {expl.timings['wall_s']:.1f}s on {where}. "
            f"Results in {out}/ (explain.csv, explain.png)"
        )
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    """Check the sizes, the destination and the memory, run every size's replicates, then
    write the folder atomically and print the headline verdicts."""
    from analysis.scale import (
        DAYS,
        SEED,
        SIZES,
        check_plan,
        format_verdicts,
        run_seconds,
        scale_dependence,
        scale_runs,
        summarise_scale,
        world,
        write_scale,
    )
    from sim.experiments.output import check_destination
    from sim.experiments.provenance import now
    from sim.experiments.resources import check_memory

    sizes = args.sizes or list(SIZES)
    days = args.days or DAYS
    seed = SEED if args.seed is None else args.seed
    plan = check_plan(sizes, {n: args.replicates for n in sizes} if args.replicates else None)
    out = check_destination(args.out, args.force)
    total = sum(plan.values())
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    workers = min(args.workers or default_workers(), total)
    at_once: dict[int, int] = {}
    if not scheduler:  # a cluster's memory is not ours to see
        for n in plan:
            fit = check_memory(world(n, days).params, workers, f"a world of {n:,} consumers")
            if fit < workers:
                at_once[n] = fit
                if not args.quiet:
                    print(
                        f"fishschool: note: {n:,} consumers: {fit} run(s) at a time fit in the "
                        f"available memory (not {workers})",
                        file=sys.stderr,
                    )
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    started, t0 = now(), time.perf_counter()
    with executor_for(workers, args.scheduler) as (executor, where):
        say(
            "fishschool scale: the defaults at "
            + ", ".join(f"{n:,} consumers ({r} replicates)" for n, r in plan.items())
            + f"; {days} days, {total} runs on {where}; into {out}/"
        )
        runs = scale_runs(
            sizes,
            replicates=plan,
            seed=seed,
            days=days,
            executor=executor,
            workers=workers,
            at_once=at_once,
            progress=Progress("runs", not args.quiet),
        )
    table = summarise_scale(runs)
    dependence = scale_dependence(table)
    timings = {"wall_s": time.perf_counter() - t0, "runs": total, "workers": workers}
    timings["run_s_mean"] = run_seconds(runs)
    command = ["fishschool", *sys.argv[1:]]
    write_scale(
        out,
        table,
        dependence,
        runs,
        plan=plan,
        seed=seed,
        days=days,
        command=command,
        started=started,
        timings=timings,
        force=args.force,
    )
    if not args.quiet:
        print(format_verdicts(dependence))
        print(
            f"\n{total} runs in {timings['wall_s']:.1f}s on {where}. Results in {out}/ "
            "(scale.md, scale.png; every rate in scale.csv and dependence.csv)"
        )
    return 0


def cmd_recruit(args: argparse.Namespace) -> int:
    """Check the world, the rules, the wave, the destination and the memory; run every rule
    with and without the wave on shared seeds; write the folder atomically; print the table."""
    from analysis.recruitment import (
        CONSUMERS,
        DAYS,
        REPLICATES,
        SEED,
        format_table,
        plan_study,
        recruitment_study,
        study_world,
        write_study,
    )
    from sim.experiments.output import OutputExistsError, check_destination
    from sim.experiments.scenario import load
    from sim.world.recruitment import RULES

    if args.scenario:
        base = load(args.scenario, _size_sets(args))
        seed = base.seed if args.seed is None else args.seed
    else:
        sets = list(args.sets)
        if args.owners is not None:
            sets.append(f"levers.owners.count={args.owners}")
        base = study_world(args.consumers or CONSUMERS, args.days or DAYS, sets)
        seed = SEED if args.seed is None else args.seed
    plan = plan_study(
        base,
        rules=args.rules or RULES,
        replicates=args.replicates or REPLICATES,
        seed=seed,
        wave_day=args.wave_day,
        wave_share=args.wave_share,
    )
    out = args.out or _default_out(f"recruit-{base.name}")
    if out.exists() or out.is_symlink():
        raise OutputExistsError(
            f"--out {out} exists: choose another folder (recruit never replaces one)"
        )
    out = check_destination(out, False)
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    workers = args.workers
    if not scheduler:  # a cluster's memory is not ours to see
        workers = _plan_workers(args, [base.params], plan.runs, "a run")
    w = base.params.world
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    with executor_for(workers, args.scheduler) as (executor, where):
        say(
            f"fishschool recruit: rules {', '.join(plan.rules)}, each without and with a churn "
            f"wave ({plan.wave_share:.0%} of active owners on day {plan.wave_day}), "
            f"{plan.replicates} replicates: {plan.runs} runs of {w.consumers:,} consumers, "
            f"{plan.budget:,} owners, {w.days} days, on {where}; into {out}/"
        )
        result = recruitment_study(
            plan,
            executor=executor,
            workers=workers,
            progress=Progress("runs", not args.quiet),
        )
    write_study(out, result, ["fishschool", *sys.argv[1:]])
    if not args.quiet:
        print(format_table(result))
        print(
            f"\n{plan.runs} runs in {result.timings['wall_s']:.1f}s on {where}. Results in "
            f"{out}/ (recruitment.md, recruitment.png; every measure in recruitment.csv)"
        )
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    """Serve the browser view in the foreground until Ctrl-C (or SIGTERM)."""
    try:
        from analysis import viz
    except ImportError as err:
        raise ParameterError(
            f"viz needs {err.name or err}, which is not installed: pip install 'fishschool[viz]'"
        ) from None
    scenario = args.scenario
    if scenario and Path(scenario).is_file():
        scenario = str(Path(scenario).resolve())
    p = viz.base_params(scenario, args.consumers, tuple(args.sets))  # bad input stops here
    from sim.experiments.resources import check_memory

    check_memory(p, what="the view's world")
    print(
        f"fishschool viz: {scenario or viz.DEFAULT_SCENARIO}, {p.world.consumers:,} consumers, "
        f"{p.owners.count:,} owners at http://{args.host}:{args.port}/ (Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    return viz.serve(scenario, args.consumers, args.sets, args.host, args.port, not args.no_open)


COMMANDS = {
    "run": cmd_run,
    "compare": cmd_compare,
    "validate": cmd_validate,
    "list": cmd_list,
    "report": cmd_report,
    "sweep": cmd_sweep,
    "analyze": cmd_analyze,
    "calibrate": cmd_calibrate,
    "optimize": cmd_optimize,
    "validate-model": cmd_validate_model,
    "viz": cmd_viz,
    "explain": cmd_explain,
    "scale": cmd_scale,
    "recruit": cmd_recruit,
}


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks shut worker pools down and remove
    partial output instead of leaving orphans behind."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; bad input is one line and status 2, Ctrl-C one line and status 130."""
    import matplotlib

    matplotlib.use("Agg")  # figures go to files, never to a window
    try:
        try:
            args = _parser().parse_args(argv)
        except UsageError as err:
            print(f"fishschool: error: {err}", file=sys.stderr)
            return 2
        _exit_on_sigterm()
        from sim.experiments.output import OutputExistsError

        try:
            return COMMANDS[args.command](args)
        except (ParameterError, OutputExistsError) as err:
            print(f"fishschool: error: {err}", file=sys.stderr)
            return 2
        except MemoryError:
            print(
                "fishschool: error: out of memory (the estimate of "
                "sim.experiments.resources was too low "
                "for this world): choose fewer consumers or --workers",
                file=sys.stderr,
            )
            return 1
    except (KeyboardInterrupt, SystemError) as err:
        if not _is_interrupt(err):
            raise
        # The atomic folder, the executor's processes and any partial output are gone by now
        # (their context managers ran on the way out).
        print("fishschool: interrupted", file=sys.stderr)
        return 130


def _is_interrupt(err: BaseException | None) -> bool:
    """Whether ``err`` is Ctrl-C, or an error raised because of it.

    Ctrl-C that lands while numba unpickles a compiled function's constants surfaces as a
    ``SystemError`` whose cause is the ``KeyboardInterrupt``.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


if __name__ == "__main__":
    raise SystemExit(main())
