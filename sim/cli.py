"""The ``fishschool`` command line.

``fishschool run [--config FILE] [--consumers N] [--owners N] [--days N] [--seed N] --out DIR``
runs one simulation, prints owners, streamer and conventional e-commerce side by side, and
writes ``summary.csv``, ``timeseries.parquet`` and ``manifest.json`` to DIR.

Bad input (an unknown or out-of-range parameter, a missing file, an existing output folder)
prints one line naming the file, key and allowed range, exits with status 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sim import __version__
from sim.model import RunResult, run
from sim.output import OutputExistsError, write_run
from sim.params import ParameterError, Params

TABLE_METRICS = (
    "reach",
    "reach_share",
    "exposures",
    "orders",
    "conversion",
    "buyer_conversion",
    "return_rate",
    "gmv",
    "net_gmv",
    "brand_cost",
    "brand_profit",
    "profit_per_order",
    "satisfaction",
    "repeat_purchase_rate",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fishschool",
        description="Social-commerce simulation: owner networks versus a mega-streamer.",
    )
    parser.add_argument("--version", action="version", version=f"fishschool {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run one simulation and write its results")
    r.add_argument("--config", type=Path, help="TOML file of parameter sections")
    r.add_argument("--consumers", type=int, help="consumers (the streamer's followers scale)")
    r.add_argument("--owners", type=int, help="shop owners")
    r.add_argument("--days", type=int, help="days to simulate")
    r.add_argument("--seed", type=int, help="random seed")
    r.add_argument("--out", type=Path, required=True, help="output folder")
    r.add_argument("--force", action="store_true", help="replace an existing output folder")
    r.add_argument("--quiet", action="store_true", help="no progress or table")
    return parser


def params_from_args(args: argparse.Namespace) -> Params:
    """The run's parameters: defaults, then the config file, then command-line options."""
    p = Params.from_toml(args.config) if args.config else Params()
    overrides = {
        key: value
        for key, value in {
            "world.consumers": args.consumers,
            "world.owners": args.owners,
            "world.days": args.days,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    try:
        return p.with_overrides(overrides)
    except ParameterError as err:
        raise ParameterError(f"command line: {err}") from None


def side_by_side(result: RunResult, metrics: Sequence[str] = TABLE_METRICS) -> str:
    """The owners / streamer / conventional / all table as text."""
    table = result.table(tuple(metrics))

    def fmt(metric: str, v: float) -> str:
        if pd.isna(v):
            return "-"
        if metric in ("conversion", "buyer_conversion", "return_rate", "reach_share"):
            return f"{100 * v:.2f}%"
        if metric in ("satisfaction", "repeat_purchase_rate"):
            return f"{v:.3f}"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"

    shown = table.apply(lambda row: [fmt(row.name, v) for v in row], axis=1, result_type="expand")
    shown.columns = table.columns
    shown.index.name = None
    shown.columns.name = None
    return shown.to_string()


class _Progress:
    """A one-line progress report on stderr: days done, rate and time left."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_pct = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        pct = 100 * done // total
        if not self.tty and pct // 10 == self.last_pct // 10 and done != total:
            return
        self.last_pct = pct
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        line = f"day {done}/{total} ({pct}%)  {rate:.1f} days/s  {left:.0f}s left"
        end = "\n" if done == total or not self.tty else ""
        print(f"\r{line}", end=end, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    p = params_from_args(args)
    if args.out.exists() and not args.force:
        raise OutputExistsError(f"{args.out} exists: choose another --out or pass --force")
    if not args.quiet:
        w = p.world
        print(
            f"fishschool {__version__}: {w.consumers:,} consumers, {w.owners:,} owners, "
            f"{w.brands} brands, {w.days} days, seed {p.seed}",
            file=sys.stderr,
        )
    result = run(p, progress=_Progress(not args.quiet))
    extra = {
        "command": ["fishschool", *sys.argv[1:]],
        "config": str(args.config) if args.config else None,
        "config_text": args.config.read_text(encoding="utf-8") if args.config else None,
    }
    out = write_run(result, args.out, force=args.force, extra=extra)
    if not args.quiet:
        print(side_by_side(result))
        t = result.timings
        print(
            f"\n{t['simulate_s']:.1f}s simulated ({t['per_tick_ms']:.0f} ms a day), "
            f"{t['build_s']:.1f}s to build the world. Results in {out}/",
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
    except (ParameterError, OutputExistsError) as err:
        print(f"fishschool: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
