"""Benchmark the model at 100k and 1M consumers, and the vectorised tick against plain Mesa.

Run with ``.venv/bin/python benchmarks/bench_model.py`` (``make bench``).

* Scenario A: 100,000 consumers, 500 owners, 50 brands, 30% streamer followers, 90 days.
  Target: the whole run (fresh process, imports, build and simulation) under 10 s.
* Scenario B: 1,000,000 consumers (mean degree 10), 5,000 owners, 30% followers, 90 days.
  Target: at most 15 s and 2 GiB peak RSS, on one core. ``--quick`` runs B and C 10 days
  only (a smoke check); ``--skip-million`` leaves B and C out.
* Scenario C: 10,000,000 consumers, 50,000 owners, 90 days. Target: at most 150 s and 8 GiB,
  on one machine: C runs on every core this process may use (the build draws the consumers on a
  second thread while the owners take their places, and the days' largest passes run in two
  pieces on two cores: :mod:`sim.world.pieces`). Each row records the cores its run had.
  ``--skip-ten-million`` leaves it out.
* Memory model: what the world of B and C holds per consumer, per edge, per order and per
  owner (:func:`sim.experiments.resources.resident_bytes`), and what a world of the real
  system's size (300 million consumers, 2 million owners, the same degree and order rate)
  would hold.
* Baseline: one Independent Cascade forwarding step (every node active, p = 0.05) on the
  100k-node graph of :func:`sim.world.graph.community_graph`, written as plain Mesa agents
  with cached neighbour lists, against the vectorised :func:`sim.world.cascade.forward`.

Every measurement runs in its own freshly spawned process, pinned to one core except C, so
peak memory (``ru_maxrss``) and timings do not mix. The figures are printed and written to
``results/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "bench.json"
SEED = 12345
EDGE_P = 0.05  # TECH-NOTES: every node active, p = 0.05
BASELINE_N = 100_000
BASELINE_TICKS = 3
VECTOR_REPS = 20
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

SCENARIOS = {
    "A": {
        "label": "A: 100k consumers",
        "one_core": True,
        "consumers": 100_000,
        "owners": 500,
        "brands": 50,
        "follower_share": 0.3,
        "mean_degree": 10.0,
        "days": 90,
        "max_wall_s": 10.0,
        "max_peak_mib": None,
    },
    "B": {
        "label": "B: 1M consumers",
        "one_core": True,
        "consumers": 1_000_000,
        "owners": 5_000,
        "brands": 50,
        "follower_share": 0.3,
        "mean_degree": 10.0,
        "days": 90,
        "max_wall_s": 15.0,
        "max_peak_mib": 2048.0,
    },
    "C": {
        "label": "C: 10M consumers",
        "one_core": False,  # one machine: a second core for the build and the largest passes
        "consumers": 10_000_000,
        "owners": 50_000,
        "brands": 50,
        "follower_share": 0.3,
        "mean_degree": 10.0,
        "days": 90,
        "max_wall_s": 150.0,
        "max_peak_mib": 8192.0,
    },
}
REAL = {"consumers": 300_000_000, "owners": 2_000_000}  # the real system, order of magnitude


# ---------------------------------------------------------------------------------------------
# Helpers run in the child processes
# ---------------------------------------------------------------------------------------------
def _one_core() -> int | None:
    """Pin this process to one CPU (Linux); returns the CPU or None where unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _cores() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _peak_mib() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_scenario(spec: dict) -> dict:
    """Build and run one CommerceModel; time build and every tick. Runs in a fresh process."""
    if spec["one_core"]:
        _one_core()
    t_start = time.perf_counter()
    from sim.experiments.resources import resident_bytes
    from sim.world.model import CommerceModel
    from sim.world.params import Params

    t_import = time.perf_counter()
    params = Params.from_dict(
        {
            "seed": SEED,
            "world": {
                "consumers": spec["consumers"],
                "brands": spec["brands"],
                "days": spec["days"],
            },
            "owners": {"count": spec["owners"]},
            "graph": {"topology": "communities", "mean_degree": spec["mean_degree"]},
            "streamer": {"follower_share": spec["follower_share"]},
        }
    )
    t0 = time.perf_counter()
    model = CommerceModel(params)
    t1 = time.perf_counter()
    peak_after_build = _peak_mib()
    ticks = []
    for _ in range(spec["days"]):
        a = time.perf_counter()
        model.step()
        ticks.append(time.perf_counter() - a)
    t2 = time.perf_counter()
    ticks.sort()
    return {
        "import_s": t_import - t_start,
        "build_s": t1 - t0,
        "simulate_s": t2 - t1,
        "ms_per_tick": 1000 * (t2 - t1) / spec["days"],
        "tick_median_ms": 1000 * ticks[len(ticks) // 2],
        "tick_max_ms": 1000 * ticks[-1],
        "peak_after_build_mib": peak_after_build,
        "peak_mib": _peak_mib(),
        "cores": _cores(),
        "memory": resident_bytes(model),
        "edges": int(model.graph.nnz // 2) if model.graph is not None else 0,
        "followers": int(model.consumers.follows.sum()),
        "orders": len(model.orders),
    }


def _baseline_graph(n: int):
    """The 100k-node graph of the default community generator, as the model would build it."""
    import numpy as np

    from sim.world.graph import community_graph
    from sim.world.params import GraphParams

    g = GraphParams()
    adj, _ = community_graph(
        n,
        10.0,
        g.community_size,
        g.mixing,
        g.degree_sigma,
        g.triadic_closure,
        np.random.default_rng(SEED),
    )
    return adj


def run_plain_mesa(n: int, ticks: int) -> dict:
    """Plain per-agent Mesa: one Agent per consumer, a Python list of neighbour agents each."""
    _one_core()
    import mesa

    from sim.world.allocator import reuse_freed_memory

    reuse_freed_memory()  # (as a model run has it: both sides alike)

    adj = _baseline_graph(n)

    class Consumer(mesa.Agent):
        def __init__(self, model: mesa.Model) -> None:
            super().__init__(model)
            self.neighbours: list[Consumer] = []
            self.exposed = False

        def step(self) -> None:
            # Independent Cascade forwarding: an active node tries each neighbour once.
            p = self.model.p
            for friend in self.neighbours:
                if self.random.random() < p:
                    friend.exposed = True
                    self.model.hits += 1

    class WordOfMouth(mesa.Model):
        def __init__(self, adj, p: float, seed: int) -> None:
            super().__init__(rng=seed)
            self.p = p
            self.hits = 0
            people = [Consumer(self) for _ in range(adj.shape[0])]
            indptr, indices = adj.indptr.tolist(), adj.indices.tolist()
            for i, person in enumerate(people):
                person.neighbours = [people[j] for j in indices[indptr[i] : indptr[i + 1]]]

        def step(self) -> None:
            self.agents.shuffle_do("step")  # every node active

    t0 = time.perf_counter()
    model = WordOfMouth(adj, EDGE_P, SEED)
    t1 = time.perf_counter()
    times = []
    for _ in range(ticks):
        a = time.perf_counter()
        model.step()
        times.append(time.perf_counter() - a)
    times.sort()
    return {
        "n": n,
        "edges": int(adj.nnz // 2),
        "build_s": t1 - t0,
        "ticks": ticks,
        "tick_s": times,
        "tick_median_ms": 1000 * times[len(times) // 2],
        "hits_per_tick": model.hits / ticks,
        "peak_mib": _peak_mib(),
    }


def run_vectorised(n: int, reps: int) -> dict:
    """The same forwarding step as array work: ``sim.world.cascade.forward`` over all nodes."""
    _one_core()
    import numpy as np

    from sim.world.allocator import reuse_freed_memory
    from sim.world.cascade import forward

    reuse_freed_memory()  # as a model run has it (CommerceModel sets it)

    adj = _baseline_graph(n)
    rng = np.random.default_rng(SEED)
    all_nodes = np.arange(n)
    forward(adj, all_nodes, EDGE_P, rng, n)  # warm-up
    times, hits = [], 0
    for _ in range(reps):
        a = time.perf_counter()
        sender_pos, _receiver = forward(adj, all_nodes, EDGE_P, rng, n)
        times.append(time.perf_counter() - a)
        hits += sender_pos.size
    times.sort()
    return {
        "n": n,
        "edges": int(adj.nnz // 2),
        "reps": reps,
        "tick_median_ms": 1000 * times[len(times) // 2],
        "tick_min_ms": 1000 * times[0],
        "hits_per_tick": hits / reps,
        "peak_mib": _peak_mib(),
    }


# ---------------------------------------------------------------------------------------------
# The parent: spawn, collect, report
# ---------------------------------------------------------------------------------------------
def in_fresh_process(fn, *args) -> tuple[dict | None, float, str | None]:
    """Run ``fn(*args)`` in a newly spawned process; returns (result, wall seconds, error)."""
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    try:
        with ctx.Pool(1) as pool:
            result = pool.apply(fn, args)
        return result, time.perf_counter() - t0, None
    except Exception as err:  # a crash or MemoryError in the child is a failed run
        return None, time.perf_counter() - t0, f"{type(err).__name__}: {err}"


def scenario_row(key: str, spec: dict, quick: bool) -> dict:
    print(f"running scenario {spec['label']}, {spec['days']} days ...", flush=True)
    res, wall, err = in_fresh_process(run_scenario, spec)
    row = {
        "scenario": key,
        "label": spec["label"] + (f" ({spec['days']} d, quick)" if quick else ""),
        "consumers": spec["consumers"],
        "owners": spec["owners"],
        "brands": spec["brands"],
        "follower_share": spec["follower_share"],
        "mean_degree": spec["mean_degree"],
        "days": spec["days"],
        "wall_s": wall,
        "target_wall_s": spec["max_wall_s"],
        "target_peak_mib": spec["max_peak_mib"],
        "error": err,
    }
    if res is not None:
        row.update(res)
        ok = wall < spec["max_wall_s"]
        if spec["max_peak_mib"] is not None:
            ok = ok and res["peak_mib"] < spec["max_peak_mib"]
        row["passed"] = ok
    else:
        row["passed"] = False
    return row


def fmt_target(row: dict) -> str:
    t = f"< {row['target_wall_s']:g} s"
    if row["target_peak_mib"] is not None:
        t += f", < {row['target_peak_mib'] / 1024:g} GiB"
    return t


def memory_model(rows: list[dict]) -> dict | None:
    """Bytes per consumer, edge, order and owner from the largest world that ran, its peak
    over what it holds, and the same arithmetic for a world of the real system's size."""
    done = [r for r in rows if r.get("memory")]
    if not done:
        return None
    r = max(done, key=lambda r: r["consumers"])
    mem = r["memory"]
    per = {k: mem[k]["per"] for k in ("consumers", "edges", "orders", "owners", "groups")}
    held = sum(v["bytes"] for v in mem.values())
    scale = REAL["consumers"] / r["consumers"]
    groups_per_owner = mem["groups"]["count"] / max(mem["owners"]["count"], 1)
    real = (
        REAL["consumers"] * per["consumers"]
        + mem["edges"]["count"] * scale * per["edges"]
        + mem["orders"]["count"] * scale * per["orders"]
        + REAL["owners"] * (per["owners"] + per["groups"] * groups_per_owner)
    )
    peak_over_held = r["peak_mib"] * 2**20 / (held + 150 * 2**20)
    return {
        "from": r["label"],
        "per": per,
        "held_mib": held / 2**20,
        "peak_mib": r["peak_mib"],
        "peak_over_held": peak_over_held,
        "real": {**REAL, "held_gib": real / 2**30, "peak_gib": real * peak_over_held / 2**30},
    }


def report_memory(model: dict | None) -> None:
    if model is None:
        return
    p = model["per"]
    print()
    print(f"Memory model (from {model['from']}; arrays the world holds after the run):")
    print(
        f"  {p['consumers']:.0f} B a consumer, {p['edges']:.1f} B an edge, "
        f"{p['orders']:.0f} B an order, {p['owners']:.0f} B an owner and {p['groups']:.0f} B a "
        f"group (members are consumers: nothing of their own)"
    )
    print(
        f"  held {model['held_mib']:,.0f} MiB, peak {model['peak_mib']:,.0f} MiB "
        f"({model['peak_over_held']:.2f}x with the interpreter: the build's temporaries)"
    )
    real = model["real"]
    print(
        f"  the real system ({real['consumers']:,} consumers, {real['owners']:,} owners): "
        f"~{real['held_gib']:,.0f} GiB held, ~{real['peak_gib']:,.0f} GiB at peak"
    )


def report(rows: list[dict], baseline: dict) -> None:
    head = (
        f"{'scenario':<30} {'cores':>5} {'wall s':>7} {'build s':>8} {'sim s':>7} {'ms/tick':>8} "
        f"{'peak MiB':>9}  {'target':<20} {'result'}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["error"]:
            print(f"{r['label']:<30} {r['wall_s']:>7.2f}  FAILED: {r['error']}")
            continue
        print(
            f"{r['label']:<30} {r['cores']:>5} {r['wall_s']:>7.2f} {r['build_s']:>8.2f} "
            f"{r['simulate_s']:>7.2f} "
            f"{r['ms_per_tick']:>8.1f} {r['peak_mib']:>9.0f}  {fmt_target(r):<20} "
            f"{'PASS' if r['passed'] else 'FAIL'}"
        )
    print(
        "(wall = fresh spawned process, on one core except C (all it may use): start-up, "
        "imports, build and simulate)"
    )
    plain, vec = baseline.get("plain_mesa"), baseline.get("vectorised")
    print()
    print(
        f"Baseline: one IC forwarding tick, {BASELINE_N:,} consumers, every node active, "
        f"p = {EDGE_P}"
    )
    if plain:
        print(
            f"  plain Mesa agents (cached neighbour lists, shuffle_do): "
            f"{plain['tick_median_ms']:8.1f} ms/tick  (median of {plain['ticks']}; "
            f"build {plain['build_s']:.2f} s, {plain['hits_per_tick']:,.0f} hits/tick, "
            f"peak {plain['peak_mib']:.0f} MiB)"
        )
    if vec:
        print(
            f"  vectorised sim.world.cascade.forward (CSR):                   "
            f"{vec['tick_median_ms']:8.2f} ms/tick  (median of {vec['reps']}; "
            f"{vec['hits_per_tick']:,.0f} hits/tick, peak {vec['peak_mib']:.0f} MiB)"
        )
    if baseline.get("speedup") is not None:
        print(f"  speed-up (plain / vectorised): {baseline['speedup']:.0f}x")
    for name in ("plain_mesa_error", "vectorised_error"):
        if baseline.get(name):
            print(f"  {name}: {baseline[name]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="run scenario B for 10 days only")
    ap.add_argument("--skip-million", action="store_true", help="leave out scenarios B and C")
    ap.add_argument("--skip-ten-million", action="store_true", help="leave out scenario C")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = ap.parse_args(argv)

    # One core: single-threaded numeric libraries in every child (inherited by spawn).
    for var in THREAD_VARS:
        os.environ[var] = "1"

    rows = [scenario_row("A", SCENARIOS["A"], quick=False)]
    large = [] if args.skip_million else ["B"] if args.skip_ten_million else ["B", "C"]
    for key in large:
        spec = dict(SCENARIOS[key])
        if args.quick:
            spec["days"] = 10
        rows.append(scenario_row(key, spec, quick=args.quick))

    print(f"running baseline: plain Mesa, {BASELINE_TICKS} ticks ...", flush=True)
    plain, _, plain_err = in_fresh_process(run_plain_mesa, BASELINE_N, BASELINE_TICKS)
    print(f"running baseline: vectorised, {VECTOR_REPS} repetitions ...", flush=True)
    vec, _, vec_err = in_fresh_process(run_vectorised, BASELINE_N, VECTOR_REPS)
    baseline = {
        "operation": "independent cascade forwarding step, every node active",
        "edge_prob": EDGE_P,
        "plain_mesa": plain,
        "vectorised": vec,
        "plain_mesa_error": plain_err,
        "vectorised_error": vec_err,
        "speedup": (plain["tick_median_ms"] / vec["tick_median_ms"] if plain and vec else None),
    }

    report(rows, baseline)
    memory = memory_model(rows)
    report_memory(memory)

    from importlib.metadata import version

    out = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "mesa": version("mesa"),
            "numpy": version("numpy"),
            "scipy": version("scipy"),
        },
        "seed": SEED,
        "scenarios": rows,
        "baseline": baseline,
        "memory_model": memory,
        "all_passed": all(r["passed"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0 if out["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
