"""Writing a run's results to a folder, atomically, with a manifest.

The folder is assembled under a temporary name next to its destination and renamed into place
only when every file is written, so an interrupted run never leaves a folder that looks
complete. An existing destination is replaced only when asked (``force``).

Files: ``summary.csv`` (channel, metric, value), ``timeseries.parquet`` (one row per day and
channel), ``manifest.json`` (seed, parameters, versions, machine, timings).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sim import __version__
from sim.model import RunResult

DEPENDENCIES = ("mesa", "numpy", "scipy", "networkx", "pandas", "pyarrow", "matplotlib")


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


def manifest(result: RunResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a result folder records about how it was made."""
    params = result.params.to_dict()
    text = json.dumps(params, sort_keys=True)
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": result.params.seed,
        "parameters": params,
        "parameters_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "timings": result.timings,
        **(extra or {}),
    }


def write_run(
    result: RunResult, out: str | Path, *, force: bool = False, extra: dict | None = None
) -> Path:
    """Write a run's results to ``out`` (atomically). Returns the folder."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists: choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        result.summary.to_csv(tmp / "summary.csv", index=False)
        result.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(manifest(result, extra), fh, indent=2, sort_keys=False)
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
    return out
