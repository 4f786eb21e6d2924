"""A compiled pass over a large batch, run in two pieces on two cores: the same result as one.

The day's longest passes (the purchase draws of every exposure, the members opening posts) are
loops over millions of items that wait on memory at every step. Two threads each waiting on
their own half overlap those waits: 1.9x on two cores for the purchase draws. The kernels
release the GIL (``nogil=True``), so a Python thread is enough (numba's ``parallel=True``
would bring a threading layer of its own, which two threads of a Dask worker must not enter at
once).

A batch is always cut at the same place, whatever the machine, and each caller joins the pieces
into exactly what one pass gives (positions shifted, totals that depend on order summed in
order), so a run never depends on how many cores it had. There is one piece, run here, when the
batch is small (a hand-over costs more than it saves), when the process may use one core only
(a pinned benchmark), or when it was told to stay on one (:func:`stay_on_one_core`: a sweep's
workers, which already fill the cores between them).

The pieces may mark the same consumer reached: both store the same ``True`` in the same byte,
which nothing reads until both are done.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

SMALLEST = 200_000  # items a batch needs to be cut in two (a hand-over costs ~0.1 ms)

_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process it belongs to, the pool)
_one_core = False  # set by stay_on_one_core


def stay_on_one_core() -> None:
    """From now on, run every batch of this process in one piece, on the calling thread."""
    global _one_core
    _one_core = True


def spare_core() -> bool:
    """Whether this process may run a second piece on another core: it may use two or more
    and was not told to stay on one."""
    if _one_core:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) >= 2


def halves(size: int) -> int:
    """Where a batch of ``size`` items is cut: its middle, or ``size`` (one piece) when it is
    smaller than :data:`SMALLEST` or no core is spare.

    >>> halves(10)
    10
    """
    return size // 2 if size >= SMALLEST and spare_core() else size


def both[T](first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """``(first(), second())``, the second on another thread when a core is spare (else here,
    after the first). When the first fails, the second is waited for before the error goes
    on, so nothing writes to the world after the caller has left."""
    if not spare_core():
        return first(), second()
    later = _piece_pool().submit(second)
    try:
        done = first()
    except BaseException:
        wait([later])
        raise
    return done, later.result()


def _piece_pool() -> ThreadPoolExecutor:
    """The one-thread pool the second pieces run on. (A process started by fork makes its
    own: threads do not survive a fork.)"""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="fishschool-piece"))
    return _pool[1]
