"""The run engine: one run as a pure function of plain data, and where runs go.

Every command (run, compare, explain, sweep, calibrate) and the notebook API runs the model the
same way:

* :func:`run_one` takes a *task*, a plain dict (so it pickles to any worker), and returns the
  run's tables. The same task gives the same numbers in this process, on local processes and on
  a Dask cluster.
* :func:`run_many` maps :func:`run_one` over tasks on any ``concurrent.futures.Executor`` (or
  in this process when there is none) and yields each task with its result or its error, in
  completion order; callers put results back in their own order. Short runs travel in
  batches (:func:`run_batch`): a batch lasts about :data:`BATCH_SECONDS`, and what its tasks
  share (the scenario's parameters) is sent once per batch, not once per run.
* :func:`make_executor` / :func:`executor_for` choose the executor: a Dask cluster when a
  scheduler is named, else local processes, else this process.

A task::

    {
        "params": {...},            # a scenario's parameters (Params.to_dict())
        "point": {"returns.misfit": 2.0},   # optional: dotted overrides on top
        "seed": 123,                # the replicate seed (overrides params' seed)
        "tags": {"scenario": "owners", "replicate": 0},  # optional: columns put first
        "tables": ["summary"],      # optional: which tables to return (default: all three)
        "metrics": ["return_rate"], # optional: summary rows kept (default: all)
        "model": "fishschool",      # or "ishigami", an analytic function for verification
        "form": "tables",           # or "rows": the kept summary rows as plain lists
    }

The result is ``{"summary": DataFrame, "timeseries": ..., "owners": ..., "timings": {...}}``
with the requested tables only; each table carries the tags as its first columns and the
``seed`` column. With ``"form": "rows"`` it is ``{"rows": {"channel": [...], "metric": [...],
"value": [...]}, "timings": {...}}``: the summary's rows (those of ``metrics``) without tags,
all a sweep keeps of a run, a few hundred bytes to send back.

Workers start warm: local processes import the model as they start, before the first run,
and a Dask cluster's workers import it when the executor is made (:func:`make_executor`). A
worker keeps freed memory for its next run (:func:`sim.world.allocator.reuse_freed_memory`,
which also overrides a Dask nanny's ``MALLOC_TRIM_THRESHOLD_=65536``: with it, every array of
more than 16,000 floats was mapped afresh and a run took a quarter longer; set
``FISHSCHOOL_KEEP_MALLOC_TRIM=1`` on the workers to keep the nanny's setting), and runs each
batch of a world in one piece (:func:`sim.world.pieces.stay_on_one_core`: the workers already
fill the cores between them).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from sim.world.params import ParameterError

TABLES = ("summary", "timeseries", "owners")
MODELS = ("fishschool", "ishigami")  # ishigami: an analytic test function, for verification
FORMS = ("tables", "rows")
ROW_COLUMNS = ("channel", "metric", "value")  # a summary row, as "form": "rows" returns it
BATCH_SECONDS = 1.0  # a batch of short runs lasts about this long on a worker
MAX_BATCH = 1000  # runs in one batch at most


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> float:
    """The Ishigami function (Ishigami & Homma 1990), the standard sensitivity test case.

    With x uniform on [-pi, pi]^3 its Sobol indices are known: S1 = (0.314, 0.442, 0),
    ST = (0.558, 0.442, 0.244).

    >>> round(ishigami(np.zeros(3)), 6)
    0.0
    """
    return float(np.sin(x[0]) + a * np.sin(x[1]) ** 2 + b * x[2] ** 4 * np.sin(x[0]))


def run_one(task: Mapping[str, Any]) -> dict[str, Any]:
    """One run of the model (or of the Ishigami function) from a task; see the module doc.

    Returns the requested tables with the task's tags and the seed as first columns, and the
    run's ``timings`` (build and simulation seconds).
    """
    return _run_one(task, None)


def _run_one(task: Mapping[str, Any], bases: dict[int, Any] | None) -> dict[str, Any]:
    """:func:`run_one`; ``bases`` caches the parsed scenario parameters by the id of their
    dict, for tasks that share one (a batch, a sweep run here)."""
    point = dict(task.get("point") or {})
    seed = int(task["seed"])
    tables = tuple(task.get("tables") or TABLES)
    form = task.get("form", "tables")
    if form not in FORMS:
        raise ValueError(f"form = {form!r} is not allowed: choose one of {FORMS}")
    metrics = task.get("metrics")
    if task.get("model", "fishschool") == "ishigami":
        y = ishigami(np.array(list(point.values()), dtype=float))
        timings = {"build_s": 0.0, "simulate_s": 0.0}
        if form == "rows":  # its one row, without a table (its runs take microseconds)
            keep = metrics is None or "y" in metrics
            rows = {"channel": ["all"], "metric": ["y"], "value": [y]} if keep else {}
            return {"rows": {c: rows.get(c, []) for c in ROW_COLUMNS}, "timings": timings}
        frames = {"summary": pd.DataFrame({"channel": ["all"], "metric": ["y"], "value": [y]})}
    else:
        from sim.world.model import run

        result = run(_params(task["params"], bases).with_overrides({**point, "seed": seed}))
        frames = {name: getattr(result, name) for name in ("summary", *tables)}
        timings = dict(result.timings)
    if form == "rows":  # the summary's rows whatever the tables
        summary = frames["summary"]
        if metrics is not None:
            summary = summary[summary.metric.isin(list(metrics))]
        rows = summary[list(ROW_COLUMNS)].to_dict(orient="list")
        return {"rows": rows, "timings": timings}
    if metrics is not None and "summary" in frames:
        summary = frames["summary"]
        frames["summary"] = summary[summary.metric.isin(list(metrics))].reset_index(drop=True)
    tags = {**dict(task.get("tags") or {}), "seed": seed}
    out: dict[str, Any] = {name: _tagged(frames[name], tags) for name in tables if name in frames}
    out["timings"] = timings
    return out


def _params(data: Mapping[str, Any], bases: dict[int, Any] | None):
    """The scenario's :class:`~sim.world.params.Params` from its dict, parsed once per dict
    when ``bases`` is given (tasks that share the dict share the parse)."""
    from sim.world.params import Params

    if bases is None:
        return Params.from_dict(dict(data))
    key = id(data)
    if key not in bases:
        bases[key] = (data, Params.from_dict(dict(data)))  # data kept: its id stays its own
    return bases[key][1]


def _tagged(df: pd.DataFrame, tags: Mapping[str, Any]) -> pd.DataFrame:
    df = df.copy()
    for i, (k, v) in enumerate(tags.items()):
        df.insert(i, k, v)
    return df


def run_many(
    tasks: Iterable[Mapping[str, Any]],
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[Mapping[str, Any], dict[str, Any] | None, Exception | None]]:
    """Run every task; yield ``(task, result, None)`` or ``(task, None, error)`` as each ends.

    ``executor=None`` runs them here, one after another, in the given order; otherwise they
    go to the executor in batches (:func:`run_batch`) and come back in completion order, a
    batch's runs together. A batch lasts about :data:`BATCH_SECONDS` once the first runs
    have told how long a run takes (the mean so far, or the last batch's if longer; until
    then a batch is one run), and no batch takes more than half a worker's share of the runs
    left, so the workers finish together. At most two batches per worker are submitted at a
    time. ``progress(done, total)`` is called after each run. When the caller stops early (an
    error it raises, Ctrl-C), batches not started yet are cancelled and the rest are never
    submitted.
    """
    todo = list(tasks)
    if executor is None:
        bases: dict[int, Any] = {}
        for i, task in enumerate(todo):
            try:
                result, error = _run_one(task, bases), None
            except Exception as err:  # the caller decides: record it or raise it
                result, error = None, err
            if progress:
                progress(i + 1, len(todo))
            yield task, result, error
        return
    queue = deque(todo)
    workers = _Slots(executor)
    inflight: dict[Future, list[Mapping[str, Any]]] = {}
    timed = [0.0, 0, 0.0]  # seconds and runs of the batches back so far; the last's run time
    done = 0
    try:
        while queue or inflight:
            back: list[tuple[list[Mapping[str, Any]], list]] = []
            while queue and len(inflight) < 2 * workers.count():
                # A run's seconds: the mean so far, or the last batch's if longer (runs that
                # grow, a larger world later in the plan, shrink the batches at once).
                per_run = max(timed[0] / timed[1], timed[2]) if timed[1] else None
                size = batch_size(len(queue), workers.count(), per_run)
                batch = [queue.popleft() for _ in range(min(size, len(queue)))]
                shared, own = split_shared(batch)
                try:
                    inflight[executor.submit(run_batch, shared, own)] = batch
                except Exception as err:  # a broken pool, a closed client: these runs fail
                    back.append((batch, [(None, err, None)] * len(batch)))
            if not back:
                finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for fut in finished:
                    batch = inflight.pop(fut)
                    try:
                        outcomes, seconds = fut.result()
                        timed[0] += seconds
                        timed[1] += len(batch)
                        timed[2] = seconds / len(batch)
                    except Exception as err:  # the batch as a whole: a lost worker, say
                        outcomes = [(None, err, None)] * len(batch)
                    back.append((batch, outcomes))
            for batch, outcomes in back:
                for task, (result, error, remote) in zip(batch, outcomes, strict=True):
                    if error is not None and remote:
                        error.__cause__ = RemoteTraceback(remote)
                    done += 1
                    if progress:
                        progress(done, len(todo))
                    yield task, result, error
    finally:
        for fut in inflight:
            fut.cancel()


def batch_size(remaining: int, workers: int, per_run: float | None) -> int:
    """Runs in the next batch: about :data:`BATCH_SECONDS` of runs of ``per_run`` seconds,
    at most half a worker's share of the ``remaining`` runs (so the last batches shrink and
    the workers finish together) and :data:`MAX_BATCH`; one while no run has come back.

    >>> batch_size(24, 2, 0.3), batch_size(6, 2, 0.3), batch_size(1000, 2, 1e-4)
    (3, 2, 250)
    """
    if per_run is None:
        return 1
    by_time = int(BATCH_SECONDS / per_run) if per_run > 0 else MAX_BATCH
    balanced = math.ceil(remaining / (2 * max(1, workers)))
    return max(1, min(by_time, balanced, MAX_BATCH))


def split_shared(
    batch: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What every task of ``batch`` holds (the same object under the same key: a sweep's or
    an experiment's parameters) and what each holds besides, so the shared part is sent once.

    >>> base = {"world": {"consumers": 2000}}
    >>> split_shared([{"params": base, "seed": 1}, {"params": base, "seed": 2}])
    ({'params': {'world': {'consumers': 2000}}}, [{'seed': 1}, {'seed': 2}])
    """
    first = batch[0]
    shared = (
        {k: v for k, v in first.items() if all(k in t and t[k] is v for t in batch[1:])}
        if len(batch) > 1
        else {}
    )
    return shared, [{k: v for k, v in t.items() if k not in shared} for t in batch]


def run_batch(
    shared: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[dict[str, Any] | None, Exception | None, str | None]], float]:
    """Run each task (``shared`` holds what they have in common) on a worker; return
    ``(result, None, None)`` or ``(None, error, traceback text)`` per task, and the seconds
    the batch took. A run's error does not stop the batch."""
    _worker_setup(dask=_in_dask_worker())
    t0 = time.perf_counter()
    bases: dict[int, Any] = {}
    outcomes: list[tuple[dict[str, Any] | None, Exception | None, str | None]] = []
    for task in tasks:
        try:
            outcomes.append((_run_one({**shared, **task}, bases), None, None))
        except Exception as err:
            outcomes.append((None, _portable(err), "".join(traceback.format_exception(err))))
    return outcomes, time.perf_counter() - t0


class RemoteTraceback(Exception):
    """The traceback of a run that failed on a worker, set as its error's cause."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


class _Slots:
    """How many runs an executor runs at once: its processes, or a Dask cluster's threads
    (asked again at most once a second: workers come and go)."""

    def __init__(self, executor: Executor) -> None:
        self.client = getattr(executor, "_client", None)
        fixed = getattr(executor, "_max_workers", None)
        self.fixed = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.value = self.fixed or default_workers()
        self.asked = -math.inf

    def count(self) -> int:
        if self.client is not None and time.monotonic() - self.asked > 1.0:
            self.asked = time.monotonic()
            try:
                self.value = max(1, sum(self.client.nthreads().values()))
            except Exception:  # keep the last answer
                pass
        return self.value


def run_all(
    tasks: Iterable[Mapping[str, Any]],
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Results of every task in the tasks' order; the first failed run's error is raised."""
    todo = list(tasks)
    results: list[dict[str, Any] | None] = [None] * len(todo)
    where = {id(task): i for i, task in enumerate(todo)}
    for task, result, error in run_many(todo, executor, progress):
        if error is not None:
            raise error
        results[where[id(task)]] = result
    return results  # type: ignore[return-value]


def default_workers() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


# ----------------------------------------------------------------------------------------------
# Where runs go
# ----------------------------------------------------------------------------------------------
SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "inproc")


def check_scheduler(text: str) -> str:
    """A Dask scheduler address, SCHEME://HOST[:PORT]; ValueError otherwise.

    >>> check_scheduler("tcp://10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    """
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEDULER_SCHEMES or not rest:
        schemes = ", ".join(f"{s}://" for s in SCHEDULER_SCHEMES)
        raise ValueError(
            f"{text} is not a Dask scheduler address (expected {schemes} and HOST:PORT)"
        )
    return text


_SET_UP: dict[str, Any] = {}  # this worker process's set-up, once done


def _worker_setup(dask: bool = False) -> dict[str, Any]:
    """Once per worker process: import the model (so the first run does not pay for it), keep
    freed memory for the next run and stay on one core (module doc). Returns what was done:
    ``{"pid", "import_s", "malloc_reused"}`` (and ``"dask"`` on a Dask worker)."""
    if not _SET_UP:
        t0 = time.perf_counter()
        import sim.world.model  # noqa: F401  (the model's imports: numpy, pandas, scipy, Mesa)
        from sim.world import allocator, pieces

        pieces.stay_on_one_core()
        _SET_UP.update(
            pid=os.getpid(),
            import_s=time.perf_counter() - t0,
            malloc_reused=allocator.reuse_freed_memory(),
        )
    if dask:
        _SET_UP["dask"] = True
    return dict(_SET_UP)


def _dask_worker_setup(dask_worker: Any = None) -> dict[str, Any]:
    """:func:`_worker_setup` on a Dask worker (``Client.run`` passes ``dask_worker``)."""
    return _worker_setup(dask=True)


def _in_dask_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _worker_init(main_pid: int) -> None:
    """In a worker process: Ctrl-C is the main process's to handle (it stops the workers);
    without this every worker prints its own KeyboardInterrupt traceback. A watchdog thread
    ends the worker within a second of the main process's death (``kill -9`` included), so no
    worker runs on for minutes with nobody to report to (the forkserver, not the main
    process, is a worker's parent, so the parent's death is no signal). The model is imported
    now, before the first run, by every worker at once."""
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, owned by someone else (cannot happen here)
                pass

    threading.Thread(target=watch, name="fishschool-watchdog", daemon=True).start()
    _worker_setup()


def _start_forkserver() -> None:
    """Start the forkserver now (while this process plans), ready at once and deaf to Ctrl-C.

    It preloads nothing, so a worker's spawn never waits on its imports: a Ctrl-C during a
    spawn that waited would leave it pending, and the worker forked after this process gave up
    would fail noisily (it preloads ``__main__`` by default). Each worker imports ``__main__``
    and the model itself instead, both at once (:func:`_worker_init`): the same wall time on
    as many cores as workers. SIGINT is blocked in this thread while the server is spawned, so
    it and the workers it forks inherit the mask and ignore Ctrl-C from their first instant
    (the main process handles it and stops them), as :mod:`multiprocessing.resource_tracker`
    does for its own process; a Ctrl-C here in that moment comes when the mask is restored.
    A server already running (an earlier pool's) is kept as it is."""
    from multiprocessing import forkserver, resource_tracker

    forkserver.set_forkserver_preload([])
    if not hasattr(signal, "pthread_sigmask"):
        forkserver.ensure_running()
        return
    resource_tracker.ensure_running()  # first: starting it unblocks SIGINT here
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def make_executor(workers: int | None, scheduler: str | None):
    """The executor runs go to, how to close it and where it is: a Dask cluster when a
    scheduler is named (or in ``$DASK_SCHEDULER_ADDRESS``), else local processes, else this
    process (executor ``None``). ``close(abort=True)`` stops local processes at once (after
    Ctrl-C or an error) instead of waiting for the runs in flight."""
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            check_scheduler(address)
        except ValueError as err:
            where = "--scheduler" if scheduler else "DASK_SCHEDULER_ADDRESS"
            raise ParameterError(f"{where} {err}") from None
        from distributed import Client

        try:
            client = Client(address, timeout="10s")
        except (OSError, ValueError) as err:
            raise ParameterError(f"--scheduler {address}: cannot connect ({err})") from None
        try:  # every worker there now imports the model before the first run
            client.run(_dask_worker_setup)
        except Exception as err:
            client.close()
            raise ParameterError(
                f"--scheduler {address}: its workers cannot run the model "
                f"({type(err).__name__}: {err}); install fishschool where they run"
            ) from None
        return (
            client.get_executor(pure=False),
            lambda abort=False: client.close(),
            f"Dask cluster at {address}",
        )
    workers = workers or default_workers()
    if workers == 1:
        return None, lambda abort=False: None, "this process"
    # forkserver: forking a process that already runs threads can deadlock its children.
    _start_forkserver()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("forkserver"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )

    def close(abort: bool = False) -> None:
        if abort:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=not abort, cancel_futures=True)

    return pool, close, f"{workers} local processes"


@contextmanager
def executor_for(workers: int | None, scheduler: str | None = None) -> Iterator[tuple]:
    """``make_executor`` as a context: (executor, where); closed on the way out, and its
    processes stopped at once when the block ends by an exception (Ctrl-C, SIGTERM)."""
    executor, close, where = make_executor(workers, scheduler)
    try:
        yield executor, where
    except BaseException:
        close(abort=True)
        raise
    close()
