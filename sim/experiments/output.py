"""Results folders: written atomically, with a manifest.

A folder is assembled under a temporary name next to its destination and renamed into place
only when every file is written, so an interrupted run never leaves a folder that looks
complete. An existing destination is replaced only when asked (``force``), and only if it is
a folder this package wrote: its ``manifest.json`` names the tool (``"tool": "fishschool"``)
and what the folder holds (``"content": "experiment"`` or ``"explanation"``). A folder of anything
else (a user's notes, a sweep) is never replaced. Output paths are checked before any work
(:func:`check_writable`), and results read back are checked file by file
(:func:`load_results`), so a damaged file is one line naming it.

Files of an experiment (``fishschool run`` or ``compare``): ``summary.csv`` (scenario,
replicate, seed, channel, metric, value), ``timeseries.parquet`` (one row per scenario,
replicate, day and channel), ``owners.parquet`` (one row per owner and run), ``manifest.json``
(scenario texts and hashes, seeds, versions, machine, timings); the report adds ``figures/``,
``report.md`` and ``report.html``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from sim.experiments import atomic
from sim.experiments.experiment import Experiment
from sim.experiments.provenance import provenance
from sim.experiments.scenario import Scenario
from sim.world.params import ParameterError


class OutputExistsError(FileExistsError):
    """The destination folder exists and replacing it was not requested (or is not allowed)."""


class OutputError(ParameterError):
    """An output path cannot be written (under a file, read-only, not a folder)."""


class ResultsError(ParameterError):
    """A results or sweep folder cannot be read: a file is missing, truncated or corrupt."""


TOOL = "fishschool"  # the ``tool`` of every manifest.json this package writes
# Kinds of folders atomic_folder writes: --force replaces only these, and only when their
# manifest says so (a sweep's or calibration's folder is a resumable store: never replaced).
REPLACEABLE = ("experiment", "explanation", "scale")


# ----------------------------------------------------------------------------------------------
# Where output may go
# ----------------------------------------------------------------------------------------------
NAME_MAX = 200  # bytes of an output's name: file systems take 255, with room for a temporary name


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(".")


def check_writable(out: str | Path, option: str = "--out", *, folder: bool = True) -> Path:
    """Refuse an output path that cannot be written, before any work: ``out`` (a folder, or
    a file with ``folder=False``) must not be the other kind, and the nearest existing folder
    above it must accept new entries (not under a file, not read-only, not /proc)."""
    out = Path(out)
    size = len(os.fsencode(out.name))
    if size > NAME_MAX:  # the temporary name next to it is longer still
        what = "folder's" if folder else "file's"
        raise OutputError(
            f"{option} {out}: the {what} name is too long ({size} bytes; at most {NAME_MAX})"
        )
    if out.exists():
        if folder and not out.is_dir():
            raise OutputError(f"{option} {out}: exists and is not a folder")
        if not folder and out.is_dir():
            raise OutputError(f"{option} {out}: is a folder, not a file")
    parent = _nearest_existing(out.parent)
    if not parent.is_dir():
        raise OutputError(f"{option} {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {out}: cannot write in {parent} (permission denied)")
    try:  # read-only file systems, /proc and /sys, where even root cannot create a folder
        os.rmdir(tempfile.mkdtemp(prefix=".fishschool-probe-", dir=parent))
    except OSError as err:
        raise OutputError(
            f"{option} {out}: cannot write in {parent} ({err.strerror or err})"
        ) from None
    return out


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _legacy_content(manifest: dict[str, Any]) -> str | None:
    """What a folder holds, from a manifest written before manifests named their tool and
    content."""
    if not isinstance(manifest.get("versions"), dict) or "fishschool" not in manifest["versions"]:
        return None
    if "coalitions" in manifest and "mode" in manifest:
        return "explanation"
    if "factors" in manifest and "design" in manifest:
        return "sweep"
    if "scenarios" in manifest and "seeds" in manifest:
        return "experiment"
    return None


def folder_content(folder: str | Path) -> str | None:
    """What this package wrote into ``folder`` according to its ``manifest.json``
    ("experiment", "explanation", "sweep", ...), or None: not a folder of this tool."""
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if manifest.get("tool") == TOOL:
        content = manifest.get("content", manifest.get("kind"))  # "kind" in older manifests
        return content if isinstance(content, str) else None
    return _legacy_content(manifest)


def check_destination(out: str | Path, force: bool, option: str = "--out") -> Path:
    """Refuse, before spending time on runs, a destination that exists (unless ``force``),
    that exists and is not a results folder of this tool (even with ``force``), or that
    cannot be written."""
    out = check_writable(out, option)
    if out.exists():
        if not force:
            raise OutputExistsError(
                f"{out} exists: choose another --out or pass --force to replace it"
            )
        content = folder_content(out)
        if content not in REPLACEABLE:
            what = "not a results folder of fishschool"
            if content:
                what = f"{_a(content)} {content} folder"
            raise OutputExistsError(
                f"{out}: {what} (no manifest.json written by fishschool run, compare, "
                "explain or scale): --force replaces only those; choose another --out"
            )
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _stamp(folder: Path, content: str) -> None:
    """Name this tool and what the folder holds in its manifest.json (written if missing)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    rest = {k: v for k, v in manifest.items() if k not in ("tool", "content")}
    text = json.dumps({"tool": TOOL, "content": content, **rest}, indent=2, default=str)
    atomic.write_text(path, text, sync_dir=False)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextmanager
def atomic_folder(
    out: str | Path, *, force: bool = False, content: str = "experiment"
) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out``, on any error (Ctrl-C
    included) it vanishes.

    Its manifest.json is stamped with this tool and ``content``: that is what lets a later
    ``--force`` replace it, and nothing else. The folder gets the user's umask (not the
    0700 of a temporary folder) and its files are flushed to disk before the rename.
    """
    out = check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())
        yield tmp
        _stamp(tmp, content)
        _fsync_tree(tmp)
        if out.exists() or out.is_symlink():
            check_destination(out, force)  # still a results folder of ours, at the last moment
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
        atomic.fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------
# Reading results back
# ----------------------------------------------------------------------------------------------
def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest.json as a dict; a missing, truncated or corrupt one is a ResultsError."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: file not found") from None
    except OSError as err:
        raise ResultsError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(
            f"{path}: truncated or corrupt (not valid JSON: {_reason(err)})"
        ) from None
    if not isinstance(manifest, dict):
        raise ResultsError(f"{path}: truncated or corrupt (not a JSON object)")
    return manifest


def read_parquet(path: str | Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A Parquet table; a truncated or corrupt file, or one without ``columns``, is a
    ResultsError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: file not found")
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise ResultsError(
            f"{path}: truncated or corrupt (not a readable Parquet file: {_reason(err)})"
        ) from None
    _check_columns(path, df, columns)
    return df


def read_csv(path: str | Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV table with at least one row; otherwise a ResultsError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: file not found")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise ResultsError(f"{path}: truncated or corrupt ({_reason(err)})") from None
    _check_columns(path, df, columns)
    if df.empty:
        raise ResultsError(f"{path}: has no rows")
    return df


def _check_columns(path: Path, df: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: truncated or corrupt (no column {', '.join(missing)})")


RESULT_FILES = ("summary.csv", "timeseries.parquet", "owners.parquet", "manifest.json")
SUMMARY_COLUMNS = ("scenario", "replicate", "seed", "channel", "metric", "value")


def _results_folder(folder: Path, files: tuple[str, ...], what: str) -> None:
    if not folder.exists():
        raise ResultsError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ResultsError(f"{folder}: not a folder")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise ResultsError(f"{folder}: not a {what} folder (missing {', '.join(missing)})")


def load_results(folder: str | Path) -> dict[str, Any]:
    """The tables and manifest of a results folder of ``fishschool run`` or ``compare``
    (``summary``, ``timeseries``, ``owners``, ``manifest``), each file checked: a missing,
    empty, truncated or corrupt one is a ResultsError naming it."""
    folder = Path(folder)
    _results_folder(folder, RESULT_FILES, "results")
    manifest = read_manifest(folder / "manifest.json")
    content = folder_content(folder)
    if content != "experiment":
        raise ResultsError(
            f"{folder / 'manifest.json'}: not a results folder of fishschool run or compare"
            + (f" ({_a(content)} {content} folder)" if content else "")
        )
    _check_manifest(folder / "manifest.json", manifest)
    summary = read_csv(folder / "summary.csv", SUMMARY_COLUMNS)
    names = [s["name"] for s in manifest["scenarios"]]
    if set(summary.scenario.astype(str)) != set(names):
        raise ResultsError(
            f"{folder / 'summary.csv'}: its scenarios {sorted(set(summary.scenario.astype(str)))} "
            f"are not those of manifest.json {names}"
        )
    return {
        "summary": summary,
        "timeseries": read_parquet(
            folder / "timeseries.parquet", ("scenario", "replicate", "day", "channel")
        ),
        "owners": read_parquet(folder / "owners.parquet", ("scenario", "replicate")),
        "manifest": manifest,
    }


def _check_manifest(path: Path, m: dict[str, Any]) -> None:
    """The keys a report reads, so a damaged manifest is one line rather than a KeyError."""
    for key in ("created", "seed", "seeds", "replicates", "versions", "scenarios"):
        if key not in m:
            raise ResultsError(f"{path}: truncated or corrupt (no key '{key}')")
    if not isinstance(m["scenarios"], list) or not m["scenarios"]:
        raise ResultsError(f"{path}: truncated or corrupt ('scenarios' is not a list of scenarios)")
    for s in m["scenarios"]:
        try:
            world, owners = s["parameters"]["world"], s["parameters"]["owners"]
            ok = (
                isinstance(s["name"], str)
                and all(k in world for k in ("consumers", "days"))
                and "count" in owners
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise ResultsError(f"{path}: truncated or corrupt (a scenario without its parameters)")


def check_sweep_results(folder: str | Path) -> None:
    """A sweep folder that ``fishschool analyze`` can read: sweep.parquet and manifest.json
    present and readable; otherwise a ResultsError naming the file."""
    folder = Path(folder)
    _results_folder(folder, ("sweep.parquet", "manifest.json"), "sweep")
    manifest = read_manifest(folder / "manifest.json")
    for key in ("design", "factors", "samples", "seed", "metrics"):
        if key not in manifest:
            raise ResultsError(
                f"{folder / 'manifest.json'}: truncated or corrupt (no key '{key}'; "
                "not a sweep's manifest?)"
            )
    read_parquet(folder / "sweep.parquet", ("point_id", "channel", "metric", "value"))


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
        "tool": TOOL,
        "content": "experiment",
        **provenance(command, exp.timings.get("started")),
        "seed": exp.seed,
        "replicates": len(exp.seeds),
        "seeds": exp.seeds,
        "scenarios": [scenario_record(s) for s in exp.scenarios],
        "posterior_draws": exp.draws,  # per replicate, when drawn from a calibration's posterior
        "timings": exp.timings,
    }


def write_tables(exp: Experiment, folder: Path, command: list[str] | None = None) -> None:
    """The experiment's tables and manifest, into an existing folder."""
    exp.summary.to_csv(folder / "summary.csv", index=False)
    exp.timeseries.to_parquet(folder / "timeseries.parquet", index=False)
    exp.owners.to_parquet(folder / "owners.parquet", index=False)
    with open(folder / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(experiment_manifest(exp, command), fh, indent=2)
