"""How the process gets its memory: keep freed blocks for reuse instead of returning them.

A day of a large world is array work on temporaries the size of the population: at ten million
consumers, hundreds of arrays of 10-80 MB are allocated and freed every day, and the build
allocates several GB more. glibc's ``malloc`` serves every block above its mmap threshold
(at most 32 MiB) with a fresh ``mmap`` and gives it back to the operating system on ``free``, so
the next array of that size pays a page fault (and the kernel's zeroing) for every page it
touches. Measured on the benchmark machine at ten million consumers: the build spent 16 of its
52 s in the kernel, and the first days 8% of their time. (A Dask nanny makes this worse: its
``MALLOC_TRIM_THRESHOLD_=65536`` also pins the mmap threshold at 128 KiB, so every array of
more than 16,000 floats is mapped afresh; a run took a quarter longer.)

:func:`reuse_freed_memory` tells glibc to serve large blocks from its heap too and to trim the
heap only when more than 2 GiB at its top is free, so a freed array's pages are reused by the
next one without a fault. It changes where memory comes from, never what a run computes. The
cost: a process keeps the memory of the largest world it built until it exits (its peak
resident size was reached anyway: +7% from fragmentation at ten million consumers, -1% at a
million). Set ``FISHSCHOOL_KEEP_MALLOC_TRIM=1`` to keep glibc's own behaviour (or a Dask
nanny's), e.g. for a notebook or a worker that builds one large world among many small ones.

Threads other than the main one allocate from glibc's per-thread arenas, which still map
blocks above 64 MiB afresh.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_TRIM_ABOVE = 2**31 - 1  # the largest value mallopt takes
OPT_OUT = "FISHSCHOOL_KEEP_MALLOC_TRIM"


def reuse_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to reuse freed blocks (see the module docstring), unless
    ``FISHSCHOOL_KEEP_MALLOC_TRIM`` is set.

    Returns
    -------
    True where the setting took (Linux with glibc); False elsewhere or when opted out, where
    nothing changes.

    Example
    -------
    >>> isinstance(reuse_freed_memory(), bool)
    True
    """
    mallopt = _mallopt()
    if mallopt is None or os.environ.get(OPT_OUT):
        return False
    # No mmap for large blocks (they come from the heap, which keeps what is freed) and no
    # trimming of the heap's free top below 2 GiB (the next world's arrays reuse it).
    return bool(mallopt(M_TRIM_THRESHOLD, _TRIM_ABOVE)) and bool(mallopt(M_MMAP_MAX, 0))


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None without glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # (glibc's soname; musl's differs)
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
