"""Results folders: written atomically, with a manifest.

A folder is assembled under a temporary name next to its destination and renamed into place
only when every file is written, so an interrupted run never leaves a folder that looks
complete. An existing destination is replaced only when asked (``force``).

Files of an experiment (``fishschool run`` or ``compare``): ``summary.csv`` (scenario,
replicate, seed, channel, metric, value), ``timeseries.parquet`` (one row per scenario,
replicate, day and channel), ``owners.parquet`` (one row per owner and run), ``manifest.json``
(scenario texts and hashes, seeds, versions, machine, timings); the report adds ``figures/``,
``report.md`` and ``report.html``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sim import __version__
from sim.experiment import Experiment
from sim.scenario import Scenario

DEPENDENCIES = (
    "mesa",
    "numpy",
    "scipy",
    "networkx",
    "pandas",
    "pyarrow",
    "matplotlib",
    "distributed",
    "SALib",
)


class OutputExistsError(FileExistsError):
    """The destination folder exists and replacing it was not requested."""


def versions() -> dict[str, str]:
    """Versions of Python, this package and its dependencies."""
    out = {"python": sys.version.split()[0], "fishschool": __version__}
    for dist in DEPENDENCIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
    }


def check_destination(out: str | Path, force: bool) -> Path:
    """Refuse an existing destination unless ``force``; call before spending time on runs."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists: choose another --out or pass --force to replace it")
    return out


@contextmanager
def atomic_folder(out: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out``, on any error it vanishes."""
    out = check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def scenario_record(s: Scenario) -> dict[str, Any]:
    """A scenario as a manifest records it: where it came from and every parameter."""
    return {
        "name": s.name,
        "question": s.question,
        "path": str(s.path) if s.path else None,
        "sha256": s.sha256,
        "overrides": list(s.overrides),
        "settings": s.settings,
        "parameters": s.params.to_dict(),
        "text": s.text,
    }


def experiment_manifest(exp: Experiment, command: list[str] | None = None) -> dict[str, Any]:
    """What a results folder records about how it was made."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "seed": exp.seed,
        "replicates": len(exp.seeds),
        "seeds": exp.seeds,
        "scenarios": [scenario_record(s) for s in exp.scenarios],
        "versions": versions(),
        "machine": machine(),
        "timings": exp.timings,
    }


def write_tables(exp: Experiment, folder: Path, command: list[str] | None = None) -> None:
    """The experiment's tables and manifest, into an existing folder."""
    exp.summary.to_csv(folder / "summary.csv", index=False)
    exp.timeseries.to_parquet(folder / "timeseries.parquet", index=False)
    exp.owners.to_parquet(folder / "owners.parquet", index=False)
    with open(folder / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(experiment_manifest(exp, command), fh, indent=2)
