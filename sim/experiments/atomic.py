"""Files written whole or not at all, durable, with the user's permissions.

A file is written under a temporary name next to its destination (``.NAME.RANDOM.tmp``),
flushed and fsynced, then renamed over the destination, and the folder is fsynced so the
rename itself survives a power cut. A reader therefore sees the old file or the complete new
one, never a part. The temporary file is created with mode 0o666 minus the process umask, as
``open`` would (``tempfile.mkstemp`` would make it 0600 and the rename would keep that).

A process killed between creating and renaming leaves its ``.tmp`` file behind:
:func:`remove_leftovers` removes those (and ``.partial`` folders) when the work resumes.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
PARTIAL_SUFFIX = ".partial"


def temporary_name(path: Path) -> Path:
    """A fresh hidden name next to ``path`` that :func:`remove_leftovers` recognises."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}")


def fsync_dir(folder: str | Path) -> None:
    """Make the renames in ``folder`` durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def write_file(
    path: str | Path, write: Callable[[BinaryIO], object], *, sync_dir: bool = True
) -> None:
    """Write ``path`` atomically and durably; ``write(fh)`` writes the bytes into ``fh``.

    ``sync_dir=False`` leaves the folder's fsync to the caller (who may batch it).
    """
    path = Path(path)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_text(path: str | Path, text: str, *, sync_dir: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    data = text.encode("utf-8")

    def write(fh: BinaryIO) -> None:
        fh.write(data)

    write_file(path, write, sync_dir=sync_dir)


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Remove the ``.*.tmp`` files and ``.*.partial`` folders that killed writers left in
    ``folder`` (not below it); returns what was removed. Call only when no other writer is at
    work in ``folder``."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.name.endswith(TMP_SUFFIX) and entry.is_file(follow_symlinks=False):
            path.unlink(missing_ok=True)
            removed.append(path)
        elif entry.name.endswith(PARTIAL_SUFFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def replaced_entries(folder: str | Path, names: Sequence[str]) -> Iterator[Path]:
    """Yield a staging folder inside ``folder`` (``.NAME.RANDOM.partial``); when the block ends
    without error, each of ``names`` drawn in it replaces the entry of that name in ``folder``
    (a file or a folder), each by one rename; on any error (Ctrl-C included) ``folder`` is left
    as it was and the staging folder vanishes. Used to redraw part of a results folder.
    """
    folder = Path(folder)
    stage = folder / f".stage.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    stage.mkdir(mode=0o777)
    try:
        yield stage
        for name in names:
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                old = stage / f".old.{name}"
                target.rename(old)  # out of the way in one rename; removed with the stage
            (stage / name).replace(target)
        fsync_dir(folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
