"""A compiled pass over a large batch, run in two pieces on two cores: the same result as one.

The day's longest passes (the purchase draws of every exposure, the members opening posts) are
loops over millions of items that wait on memory at every step. Two threads each waiting on
their own half overlap those waits: 1.9x on two cores for the purchase draws. The kernels
release the GIL (``nogil=True``), so a Python thread is enough; numba's own threading layers
are not needed (and its default one must not be entered from two threads at once, as a Dask
worker with several threads would).

A batch is always cut at the same place, whatever the machine, and each caller joins the pieces
into exactly what one pass gives (positions shifted, totals that depend on order summed in
order), so a run never depends on how many cores it had. With one core to use (a pinned
benchmark, a sweep's worker process), or a small batch, there is one piece: a hand-over costs
more than it saves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

SMALLEST = 200_000  # items a batch needs to be cut in two (a hand-over costs ~0.1 ms)

_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process it belongs to, the pool)


def halves(size: int) -> int:
    """Where a batch of ``size`` items is cut: its middle, or ``size`` (one piece) when it is
    smaller than :data:`SMALLEST` or this process may use only one core.

    >>> halves(10)
    10
    """
    return size // 2 if size >= SMALLEST and _second_core() is not None else size


def both[T](first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """``(first(), second())``, the second on another thread when this process may use two
    cores or more (else here, after the first)."""
    pool = _second_core()
    if pool is None:
        return first(), second()
    later = pool.submit(second)
    return first(), later.result()


def _second_core() -> ThreadPoolExecutor | None:
    """A one-thread pool for the second piece, or None with one core to use. (A process
    started by fork gets a pool of its own: threads do not survive a fork.)"""
    global _pool
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        return None
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="fishschool-piece"))
    return _pool[1]
