"""Will a world fit in memory? An estimate before building it, and the machine's free memory.

A world that cannot fit would be built for minutes and then die with ``MemoryError`` (or be
killed by the kernel); the commands refuse it up front with the estimate instead.

The estimate is a fit to measured peaks (``ru_maxrss`` of a fresh process, Python 3.12,
numpy 2; the peak is reached while the social graph is built, so the number of days hardly matters):

==========================  ===========  =========  ==================================
consumers                   mean degree  peak       note
==========================  ===========  =========  ==================================
(imports only)              -            147 MiB    :data:`BASE_BYTES`
400,000                     2            292 MiB
200,000                     5            233 MiB
200,000 / 400,000           10           314 / 513 MiB
200,000                     20           797 MiB
100,000 / 200,000           40           1,248 / 2,736 MiB
100,000 / 1,000,000         10           234 / 932 MiB  ``make bench`` (90 days, README Speed)
200,000 / 400,000           well-mixed   431 / 1,128 MiB
==========================  ===========  =========  ==================================

Per consumer that is about :data:`PER_CONSUMER_BYTES` plus :data:`PER_DEGREE_SQUARED_BYTES`
times the squared mean degree (the peak grows with the square of the degree): 1,050 bytes at
the default degree 10, 3.3 KB at 20, 12 KB at 40. The fit errs on the high side at the default
(1.15 GiB estimated for the benchmark's 932 MiB); 50 million consumers come to about 49 GiB.
A well-mixed world (no graph) measured more, growing faster than its size (1.4 KB a consumer at
200,000, 2.4 KB at 400,000); it is estimated as degree 20 (3.3 KB), which can be low for
very large well-mixed worlds. An edge list is estimated as the default degree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.world.params import ParameterError, Params

MIB = 2**20
GIB = 2**30
BASE_BYTES = 150 * MIB  # the interpreter with numpy, scipy, pandas and mesa imported
PER_CONSUMER_BYTES = 300  # consumers' arrays, demand, groups, followers, orders
PER_DEGREE_SQUARED_BYTES = 7.5  # building the social graph, per consumer and squared degree


def run_bytes(p: Params) -> int:
    """Estimated peak memory of one run of the model with parameters ``p``, in bytes.

    >>> round(run_bytes(Params().with_overrides({"world.consumers": 1_000_000})) / MIB)
    1151
    """
    # A well-mixed world and an edge list: see the module's notes (a guard, not a promise).
    degree = {"communities": p.graph.mean_degree, "well_mixed": 20.0}.get(p.graph.topology, 10.0)
    per_consumer = PER_CONSUMER_BYTES + PER_DEGREE_SQUARED_BYTES * degree**2
    return int(BASE_BYTES + p.world.consumers * per_consumer)


def available_bytes() -> int | None:
    """Memory this process can still use: the system's available memory (psutil if installed,
    else ``MemAvailable`` of /proc/meminfo), capped by a cgroup v2 limit; None if unknown."""
    found: list[int] = []
    try:
        import psutil

        found.append(int(psutil.virtual_memory().available))
    except Exception:  # not installed, or no access
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(found)) if found else None


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def check_memory(params: Params | list[Params], parallel: int = 1, what: str = "the world") -> int:
    """Refuse (ParameterError) a run whose estimated memory exceeds what is available.

    ``params``: the largest world(s) to be run; ``parallel``: runs at the same time in local
    processes. Returns how many runs fit side by side (at least 1, at most ``parallel``), so a
    caller can lower its number of workers; unknown free memory lets everything through.
    """
    worlds = params if isinstance(params, list) else [params]
    need = max(run_bytes(p) for p in worlds)
    free = available_bytes()
    if free is None:
        return parallel
    if need > free:
        largest = max(worlds, key=run_bytes)
        raise ParameterError(
            f"{what} needs about {_gib(need)} of memory "
            f"({largest.world.consumers:,} consumers, mean degree {largest.graph.mean_degree:g}; "
            f"estimate of sim.experiments.resources.run_bytes), but {_gib(free)} is available: "
            "choose fewer consumers (--consumers or --set world.consumers=N)"
        )
    # Each local process builds its own world; this process only collects tables.
    return max(1, min(parallel, free // need))


def plan_workers(
    requested: int | None, params: Params | list[Params], runs: int, what: str = "a run"
) -> tuple[int, str | None]:
    """How many local processes to run ``runs`` runs of the worlds ``params`` on, and a note
    when memory lowered the default: ``requested`` (default: all cores), no more than the runs,
    and no more than fit in memory side by side. Refused (ParameterError) when a world does not
    fit even alone, or when ``requested`` processes do not fit."""
    from sim.experiments.engine import default_workers

    wanted = min(requested or default_workers(), max(runs, 1))
    fit = check_memory(params, wanted, what)
    if fit >= wanted:
        return wanted, None
    if requested:
        raise ParameterError(
            f"--workers {requested}: {wanted} runs at once need more memory than is "
            f"available; at most {fit} fit side by side (--workers {fit})"
        )
    return fit, f"{fit} runs at a time fit in the available memory (not {wanted})"


def resident_bytes(model: Any) -> dict[str, dict[str, float]]:
    """What a built (or run) world holds, by what its arrays index: the memory model.

    Every numpy array reachable from the model (through its components' attributes, to a
    depth of four) is counted once, under the entity one of its axes runs over: ``consumers``
    (an axis of length n: traits, needs, trust, reach flags), ``edges`` (the social graph's
    sparse matrix: indices, data and row pointers, per undirected edge), ``orders`` (the order
    book's columns, per order placed; the book grows by doubling, so up to twice that is
    allocated), ``owners`` (an axis of length m), ``groups``, and ``other`` (catalogue,
    brands, recorder). Members cost nothing of their own: a member is a consumer whose group
    index is set.

    Returns ``{entity: {"bytes": total, "count": how many, "per": bytes per one}}``.

    >>> import numpy as np
    >>> class World: pass
    >>> w = World(); w.n = 10; w.traits = np.zeros((10, 2), np.float32)
    >>> resident_bytes(w)["consumers"]["per"]
    8.0
    """
    import numpy as np
    import scipy.sparse as sp

    n = int(getattr(model, "n", 0))
    owners = getattr(model, "owners", None)
    m = int(getattr(owners, "m", 0))
    groups = int(getattr(getattr(owners, "group_owner", None), "size", 0))
    orders = getattr(model, "orders", None)
    placed = len(orders) if orders is not None else 0
    total = dict.fromkeys(("consumers", "edges", "orders", "owners", "groups", "other"), 0)
    seen: set[int] = {id(model)}  # components that point back to the model are not re-entered

    def entity(path: str, shape: tuple[int, ...]) -> str:
        if ".orders." in path or path.startswith("orders."):
            return "orders"
        if n and n in shape:
            return "consumers"
        if m and m in shape and ".owners." in f".{path}":
            return "owners"
        if groups and groups in shape and ".owners." in f".{path}":
            return "groups"
        return "other"

    def walk(obj: Any, path: str, depth: int) -> None:
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total[entity(path, obj.shape)] += obj.nbytes
        elif sp.issparse(obj):
            parts = ("data", "indices", "indptr", "row", "col")
            total["edges"] += sum(getattr(obj, a).nbytes for a in parts if hasattr(obj, a))
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(value, f"{path}.{key}", depth + 1)
        elif type(obj).__module__.startswith("sim.") and hasattr(obj, "__dict__"):
            for key, value in vars(obj).items():
                walk(value, f"{path}.{key}", depth + 1)

    for key, value in vars(model).items():
        walk(value, key, 1)
    graph = getattr(model, "graph", None)
    edges = int(graph.nnz // 2) if graph is not None else 0
    count = {"consumers": n, "edges": edges, "orders": placed, "owners": m, "groups": groups}
    return {
        name: {
            "bytes": float(b),
            "count": float(count.get(name, 1)),
            "per": float(b / count[name]) if count.get(name) else float(b),
        }
        for name, b in total.items()
    }
