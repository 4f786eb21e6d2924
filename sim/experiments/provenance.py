"""Provenance: what every manifest records about how a result was made.

The command line, when it started and finished, the git commit of the code (or ``not a git
checkout``), the versions of Python, this package and its dependencies, and the machine; so a
published number can be traced to the code and libraries that made it and re-run as it was
(``requirements.lock`` pins the versions).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sim import __version__

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
    "pymoo",
)


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


def now() -> str:
    """The time now, UTC, to the second (ISO 8601): every manifest's clock."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str:
    """The git commit of the code that runs (``+dirty`` with uncommitted changes), or ``not a
    git checkout`` (an installed package, no git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        git = ["git", "-C", str(root)]
        head = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "not a git checkout"
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def provenance(command: list[str] | None, started: str | None = None) -> dict[str, Any]:
    """What every manifest records about how it was made: the command line (this process's
    when None), start and end time (``created`` is the end), the git commit, versions and
    machine."""
    finished = now()
    return {
        "created": finished,
        "started": started or finished,
        "finished": finished,
        "command": command if command is not None else ["fishschool", *sys.argv[1:]],
        "git_commit": git_commit(),
        "versions": versions(),
        "machine": machine(),
    }
