"""Which consumers the platform makes owners (ODD 5.5): the recruitment rule.

Four rules, dispatched by :func:`choose_owners`:

* ``random`` (:func:`random_owners`): a uniformly random set, the model's default;
* ``degree`` (:func:`highest_degree`): the best-connected consumers;
* ``communities`` (:func:`spread_over_communities`): owners spread over the graph's communities
  in proportion to their sizes, at random within each;
* ``celf`` (:func:`celf`): greedy influence maximisation on the word-of-mouth cascade, with
  the lazy evaluation of Leskovec et al. (2007).

Influence is the expected number of consumers a word-of-mouth cascade from the owners reaches
(the owners included) when every reached consumer forwards: the Independent Cascade of
:mod:`sim.world.cascade`, where a forward ``u -> v`` succeeds with probability ``edge_prob[v]``
(in the model, ``word_of_mouth.edge_prob`` times v's trust in friends). It is estimated on
live-edge samples (Kempe, Kleinberg & Tardos 2003): in each of ``samples`` copies of the graph
every directed edge ``u -> v`` is kept with probability ``edge_prob[v]``, and a cascade from
``S`` reaches exactly the nodes reachable from ``S`` over kept edges. Each node's reachable set
in every sample is computed once (:func:`reach_matrix`), so the estimated spread
(:func:`spread`) is a coverage function: monotone and submodular on the same samples, and the
greedy set is within ``1 - 1/e`` of the best set of its size on them (Nemhauser, Wolsey &
Fisher 1978). :func:`greedy_naive` and :func:`brute_force` evaluate on the same samples, so
the tests compare the three exactly.

References
----------
Kempe, D., Kleinberg, J. & Tardos, E. (2003). Maximizing the spread of influence through a
social network. KDD '03.
Leskovec, J., Krause, A., Guestrin, C., Faloutsos, C., VanBriesen, J. & Glance, N. (2007).
Cost-effective outbreak detection in networks. KDD '07.
Nemhauser, G. L., Wolsey, L. A. & Fisher, M. L. (1978). An analysis of approximations for
maximizing submodular set functions. Mathematical Programming 14.
"""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np
import scipy.sparse as sp

from sim.world.ragged import rank_in_run, starts

RULES = ("random", "degree", "communities", "celf")

SAMPLES = 100
"""Live-edge samples for the spread estimate; the greedy set is chosen on them. Fewer samples
overfit: on the default 100,000-node graph, 500 owners chosen on 100 samples among 2,000
candidates reach 2% more on fresh samples than ones chosen on 40 samples among 4,000."""

CANDIDATES_PER_OWNER = 4
"""With ``candidates="auto"``, CELF considers the ``4 x count`` highest-degree consumers (at
least :data:`MIN_CANDIDATES`). See :func:`celf`."""

MIN_CANDIDATES = 1_000

CHUNK_CELLS = 1 << 24
"""Cells of the breadth-first search's visited table (int32, so 64 MiB): the (node, sample)
pairs searched at once times the nodes (:func:`reach_matrix`)."""

MAX_ENTRIES = 150_000_000
"""Cap on the entries of the reach matrix (about 5 bytes each: a 32-bit column and a boolean,
so 750 MB, and up to twice that while it is built). :func:`reach_matrix` stops with a
ValueError beyond it: fewer samples or fewer candidates then fit."""

BRUTE_FORCE_SETS = 1_000_000
"""At most this many sets are enumerated by :func:`brute_force`."""


def choose_owners(
    rule: str,
    adj: sp.csr_array | None,
    count: int,
    rng: np.random.Generator,
    *,
    n: int | None = None,
    community: np.ndarray | None = None,
    edge_prob: np.ndarray | float | None = None,
    samples: int = SAMPLES,
    candidates: int | str | None = "auto",
) -> np.ndarray:
    """The ``count`` consumers made owners under ``rule`` (one of :data:`RULES`).

    Parameters
    ----------
    rule : ``"random"``, ``"degree"``, ``"communities"`` or ``"celf"``.
    adj : symmetric CSR adjacency, or None for a well-mixed population (``random`` only).
    count : number of owners, ``0 <= count <= n``.
    rng : the random generator; the only source of randomness.
    n : population size; needed only without a graph (else ``adj.shape[0]``).
    community : each consumer's community label (``communities`` only), e.g. from
        :func:`sim.world.graph.community_graph` or :func:`sim.world.graph.regions`.
    edge_prob : per-receiver forward probability, or one probability (``celf`` only).
    samples, candidates : as in :func:`celf`.

    Returns
    -------
    The owners' node ids (int64), in the rule's order (``random``: the permutation's;
    ``degree``: by degree; ``celf``: pick order; ``communities``: random).

    >>> choose_owners("random", None, 3, np.random.default_rng(0), n=10).tolist()
    [4, 6, 2]
    """
    if rule not in RULES:
        raise ValueError(f"recruitment rule = {rule!r}: expected one of {', '.join(RULES)}")
    if adj is not None:
        size = adj.shape[0]
        if n is not None and n != size:
            raise ValueError(f"n = {n}: the graph has {size} nodes")
    elif n is not None:
        size = int(n)
    else:
        raise ValueError("choose_owners needs a graph (adj) or, for a well-mixed population, n")
    _check_count(count, size)
    if rule == "random":
        return random_owners(size, count, rng)
    if adj is None:
        raise ValueError(f"recruitment rule = {rule!r} needs a graph; without one use 'random'")
    if rule == "degree":
        return highest_degree(adj, count, rng)
    if rule == "communities":
        if community is None:
            raise ValueError("recruitment rule = 'communities' needs the community labels")
        if np.shape(community) != (size,):
            raise ValueError(f"community has shape {np.shape(community)}: expected ({size},)")
        return spread_over_communities(community, count, rng)
    if edge_prob is None:
        raise ValueError("recruitment rule = 'celf' needs the edge probability (edge_prob)")
    return celf(adj, edge_prob, count, rng, samples=samples, candidates=candidates)


def _check_count(count: int, n: int) -> None:
    """ValueError unless ``count`` is an integer in ``0..n``."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or not 0 <= count <= n:
        raise ValueError(f"owner count = {count!r}: expected an integer in 0..{n}")


def random_owners(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` consumers of ``n`` at random: the first ``count`` of a random permutation.

    This is the model's draw before recruitment rules existed, kept draw for draw so a run with
    the default rule is unchanged.

    >>> random_owners(10, 3, np.random.default_rng(0)).tolist()
    [4, 6, 2]
    """
    _check_count(count, n)
    return rng.permutation(n)[:count]


def highest_degree(adj: sp.csr_array, count: int, rng: np.random.Generator) -> np.ndarray:
    """The ``count`` consumers with the most friends, highest first; equal degrees in random
    order (one permutation from ``rng``).

    >>> from sim.world.graph import from_edges
    >>> star = from_edges(np.zeros(4, dtype=int), np.arange(1, 5), 6)  # 0 is the hub; 5 alone
    >>> highest_degree(star, 2, np.random.default_rng(0))[0].item()
    0
    """
    n = adj.shape[0]
    _check_count(count, n)
    degree = np.diff(adj.indptr)
    shuffled = rng.permutation(n)
    return shuffled[np.argsort(-degree[shuffled], kind="stable")[:count]]


def largest_remainder(sizes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``count`` over groups in proportion to ``sizes`` (Hamilton's largest-remainder
    method): each group gets the floor of its quota, and the seats left go to the largest
    fractional parts, equal ones in random order. No group gets more than its size when
    ``count <= sizes.sum()``.

    >>> largest_remainder(np.array([50, 30, 20]), 7, np.random.default_rng(0)).tolist()
    [4, 2, 1]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(sizes.size, dtype=np.int64)
    exact = sizes * count  # quotas times total, in integers: exact remainders
    seats = exact // total
    remainder = exact - seats * total
    left = count - int(seats.sum())
    shuffled = rng.permutation(sizes.size)
    order = shuffled[np.argsort(-remainder[shuffled], kind="stable")]
    seats[order[:left]] += 1
    return seats


def spread_over_communities(
    community: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` consumers spread over the communities in proportion to their sizes
    (:func:`largest_remainder`), uniformly at random within each; returned in random order.

    Parameters
    ----------
    community : each consumer's community label (non-negative integers).
    count : number of owners.
    rng : the random generator.

    >>> c = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    >>> picks = spread_over_communities(c, 5, np.random.default_rng(0))
    >>> np.bincount(c[picks]).tolist()
    [2, 1, 2]
    """
    community = np.asarray(community)
    n = community.size
    _check_count(count, n)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if community.min() < 0:
        raise ValueError("community labels must be non-negative integers")
    sizes = np.bincount(community)
    seats = largest_remainder(sizes, count, rng)
    # Consumers in random order, grouped by community (a stable sort keeps the random order
    # within each): each community's first ``seats`` are chosen.
    shuffled = rng.permutation(n)
    grouped = shuffled[np.argsort(community[shuffled], kind="stable")]
    label = community[grouped]
    chosen = grouped[rank_in_run(label) < seats[label]]
    return chosen[rng.permutation(chosen.size)]


def live_edges(
    adj: sp.csr_array, edge_prob: np.ndarray | float, samples: int, rng: np.random.Generator
) -> sp.csr_array:
    """``samples`` live-edge graphs as one block-diagonal boolean CSR of ``samples * n`` nodes.

    Sample ``s`` is nodes ``s * n .. s * n + n - 1``; in it each directed edge ``u -> v`` of
    ``adj`` is kept with probability ``edge_prob[v]``, independently (Kempe et al. 2003: the
    nodes reachable from ``S`` have the Independent Cascade's distribution). One uniform draw
    per edge and sample, sample after sample, in ``adj``'s entry order.

    >>> from sim.world.graph import from_edges
    >>> path = from_edges(np.array([0, 1]), np.array([1, 2]), 3)
    >>> live_edges(path, np.array([1.0, 0.0, 1.0]), 2, np.random.default_rng(0)).nnz
    4
    """
    n = adj.shape[0]
    senders = np.repeat(np.arange(n, dtype=np.int64), np.diff(adj.indptr))
    receivers = adj.indices.astype(np.int64)
    probs = _edge_probs(edge_prob, n)[receivers]
    src, dst = [], []
    for s in range(samples):
        keep = rng.random(receivers.size) < probs
        src.append(senders[keep] + s * n)
        dst.append(receivers[keep] + s * n)
    size = samples * n
    tail = np.concatenate(src) if src else np.empty(0, dtype=np.int64)
    head = np.concatenate(dst) if dst else np.empty(0, dtype=np.int64)
    index = _index_dtype(size, tail.size)
    # Senders ascend (row by row, sample by sample), so the row pointer is a cumulative count.
    indptr = np.zeros(size + 1, dtype=index)
    np.cumsum(np.bincount(tail, minlength=size), out=indptr[1:])
    return sp.csr_array(
        (np.ones(head.size, dtype=bool), head.astype(index), indptr), shape=(size, size)
    )


def _edge_probs(edge_prob: np.ndarray | float, n: int) -> np.ndarray:
    """Per-receiver probabilities as an array of length ``n``; ValueError outside [0, 1]."""
    probs = np.broadcast_to(np.asarray(edge_prob, dtype=np.float64), (n,))
    if probs.size and not (np.all(probs >= 0.0) and np.all(probs <= 1.0)):
        raise ValueError("edge_prob: expected probabilities in [0, 1]")
    return probs


def _index_dtype(*sizes: int) -> type[np.signedinteger]:
    """int32 where every size fits, else int64."""
    return np.int32 if max(sizes, default=0) < np.iinfo(np.int32).max else np.int64


def reach_matrix(
    adj: sp.csr_array,
    edge_prob: np.ndarray | float,
    samples: int,
    rng: np.random.Generator,
    nodes: np.ndarray | None = None,
    *,
    max_entries: int = MAX_ENTRIES,
) -> sp.csr_array:
    """Who each node reaches in every live-edge sample, as one boolean CSR.

    Row ``u`` has a True at column ``s * n + v`` when ``v`` is reachable from ``u`` in sample
    ``s`` (``u`` itself always is), so the spread of a set is the number of distinct columns
    of its rows over ``samples`` (:func:`spread`), and a node's marginal gain the number of its
    row's columns not yet covered.

    The reachable sets are found by breadth-first search from every (node, sample) pair, a
    chunk of pairs at a time, each level for the whole chunk at once over the block-diagonal
    live-edge graph (:func:`live_edges`); a dense "visited" table of the chunk's pairs by
    nodes (at most :data:`CHUNK_CELLS` cells, cleared after each chunk by the entries found)
    makes the work proportional to the edges searched, however deep the cascades. (A
    frontier-times-adjacency product merged with the reach so far costs the reach times the
    depth instead: 50 times as much near the critical point.)

    The memory is the number of entries: ``samples`` times the sum over ``nodes`` of their
    mean reach. It is small for a subcritical cascade and grows fast towards criticality; the
    model's default edge probability is near it (on the default graph a random consumer's mean
    reach is about 20 at 10,000 nodes and 110 at 100,000, the 2,000 highest-degree ones' about
    400 at 100,000). ``max_entries`` stops the search with a ValueError before memory runs out.

    Parameters
    ----------
    adj : symmetric CSR adjacency.
    edge_prob : per-receiver probability (length n) or one probability.
    samples : number of live-edge samples ``R``.
    rng : the random generator (:func:`live_edges` draws).
    nodes : the rows to fill (others stay empty): the candidates. Default: every node.
    max_entries : cap on the entries (see :data:`MAX_ENTRIES`).

    Returns
    -------
    A boolean ``n x (samples * n)`` CSR with sorted columns.

    >>> from sim.world.graph import from_edges
    >>> path = from_edges(np.array([0, 1]), np.array([1, 2]), 3)
    >>> reach = reach_matrix(path, 1.0, 2, np.random.default_rng(0))
    >>> reach[[0]].indices.tolist()  # node 0 reaches 0, 1, 2 in both samples
    [0, 1, 2, 3, 4, 5]
    """
    n = adj.shape[0]
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"samples = {samples!r}: expected an integer of at least 1")
    nodes = np.arange(n) if nodes is None else np.unique(np.asarray(nodes, dtype=np.int64))
    if nodes.size and (nodes[0] < 0 or nodes[-1] >= n):
        raise ValueError(f"nodes: expected node ids in 0..{n - 1}")
    graph = live_edges(adj, edge_prob, samples, rng)
    width = samples * n
    index = _index_dtype(width, max_entries)
    # Pair p = (candidate p // samples, sample p % samples): candidate-major, so a chunk's rows
    # in order are whole rows of the result, or consecutive pieces of one.
    pairs = nodes.size * samples
    per_chunk = max(1, min(pairs, CHUNK_CELLS // max(n, 1)))
    visited = np.full(per_chunk * n, -1, dtype=np.int32)
    columns: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    stored = 0
    for first in range(0, pairs, per_chunk):
        pair = np.arange(first, min(first + per_chunk, pairs), dtype=np.int64)
        base = (pair % samples) * n  # the pair's sample's first node
        found = _search(graph, nodes[pair // samples], base, n, visited, max_entries - stored)
        if found is None:
            raise ValueError(
                f"the reach matrix exceeds max_entries = {max_entries} entries: use fewer "
                "samples or candidates (the cascade may be near critical)"
            )
        local = found // n  # the chunk's pairs in order, each one's nodes ascending
        columns.append((found - local * n + base[local]).astype(index))
        counts.append(np.bincount(local, minlength=pair.size))
        stored += found.size
    per_node = np.zeros(n, dtype=np.int64)
    if pairs:
        per_node[nodes] = np.concatenate(counts).reshape(nodes.size, samples).sum(axis=1)
    indptr = np.zeros(n + 1, dtype=_index_dtype(width, stored))
    np.cumsum(per_node, out=indptr[1:])
    indices = np.concatenate(columns) if columns else np.empty(0, dtype=index)
    return sp.csr_array((np.ones(stored, dtype=bool), indices, indptr), shape=(n, width))


def _search(
    graph: sp.csr_array,
    start: np.ndarray,
    base: np.ndarray,
    n: int,
    visited: np.ndarray,
    room: int,
) -> np.ndarray | None:
    """Breadth-first search of the block-diagonal live-edge ``graph`` from ``len(start)``
    (node, sample) pairs at once: pair ``i`` starts at node ``start[i]`` of the sample whose
    nodes begin at ``base[i]``.

    Returns the sorted keys ``i * n + v`` of every node ``v`` pair ``i`` reaches (itself
    included). ``visited`` (int32, all -1, at least ``len(start) * n`` cells) is the table of
    keys seen, left all -1 again. None if more than ``room`` keys are found.
    """
    indptr, indices = graph.indptr, graph.indices
    key = np.arange(start.size, dtype=np.int64) * n + start
    visited[key] = 0
    levels = [key]
    total = key.size
    while key.size:
        pair = key // n
        sender = key - pair * n + base[pair]
        begin = indptr[sender]
        degree = indptr[sender + 1] - begin
        slot = np.repeat(begin - starts(degree), degree) + np.arange(int(degree.sum()))
        pair = np.repeat(pair, degree)
        key = pair * n + (indices[slot] - base[pair])
        key = key[visited[key] < 0]
        # Each key once: of the tries reaching a key, the one whose position stands keeps it.
        position = np.arange(key.size, dtype=visited.dtype)
        visited[key] = position
        key = key[visited[key] == position]
        levels.append(key)
        total += key.size
        if total > room:
            for found in levels:
                visited[found] = -1
            return None
    found = np.concatenate(levels)
    found = np.sort(found.astype(visited.dtype) if visited.size < 2**31 else found)
    visited[found] = -1
    return found


def spread(reach: sp.csr_array, nodes: np.ndarray | list[int], samples: int) -> float:
    """Estimated spread of a set: the mean over the samples of the nodes it reaches.

    >>> from sim.world.graph import from_edges
    >>> path = from_edges(np.array([0, 1]), np.array([1, 2]), 3)
    >>> reach = reach_matrix(path, 0.0, 4, np.random.default_rng(0))
    >>> spread(reach, [0, 2], 4)  # with no live edges a set reaches itself
    2.0
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    if nodes.size == 0:
        return 0.0
    parts = [reach.indices[reach.indptr[u] : reach.indptr[u + 1]] for u in nodes]
    return np.unique(np.concatenate(parts)).size / samples


def candidates_of(reach: sp.csr_array) -> np.ndarray:
    """The nodes a reach matrix has rows for (every searched node reaches herself)."""
    return np.flatnonzero(np.diff(reach.indptr))


def lazy_greedy(reach: sp.csr_array, count: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximisation of :func:`spread` with CELF's lazy evaluation.

    Every candidate sits in a max-heap under an upper bound of its marginal gain (its last
    computed gain: by submodularity gains only shrink). The top is re-evaluated against the
    current set; if it is still on top it is picked, without evaluating the rest (Leskovec et
    al. 2007, "lazy forward"). Gains are exact integers on the fixed samples, and equal gains
    go to the smallest node id, so the picks are exactly :func:`greedy_naive`'s.

    Parameters
    ----------
    reach : the reach matrix (:func:`reach_matrix`); its non-empty rows are the candidates.
    count : how many to pick.
    samples : the number of samples the matrix holds.

    Returns
    -------
    (picks, gains) : the nodes in pick order and each one's marginal gain in spread.

    >>> from sim.world.graph import from_edges
    >>> two_paths = from_edges(np.array([0, 1, 3]), np.array([1, 2, 4]), 5)
    >>> reach = reach_matrix(two_paths, 1.0, 1, np.random.default_rng(0))
    >>> picks, gains = lazy_greedy(reach, 2, 1)
    >>> picks.tolist(), gains.tolist()
    ([0, 3], [3.0, 2.0])
    """
    indptr, indices = reach.indptr, reach.indices
    candidates = candidates_of(reach)
    _check_picks(count, candidates.size)
    covered = np.zeros(reach.shape[1], dtype=bool)
    # (minus the gain bound, node, the round it was computed in): round 0's are exact.
    size = np.diff(indptr)
    heap = [(-int(size[u]), int(u), 0) for u in candidates]
    heapq.heapify(heap)
    picks, gains = [], []
    for round_ in range(count):
        while True:
            bound, u, fresh = heapq.heappop(heap)
            if fresh == round_:
                break
            row = indices[indptr[u] : indptr[u + 1]]
            heapq.heappush(heap, (-int(row.size - np.count_nonzero(covered[row])), u, round_))
        picks.append(u)
        gains.append(-bound)
        covered[indices[indptr[u] : indptr[u + 1]]] = True
    return np.array(picks, dtype=np.int64), np.array(gains, dtype=np.float64) / samples


def _check_picks(count: int, available: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise ValueError(f"count = {count!r}: expected a non-negative integer")
    if count > available:
        raise ValueError(f"count = {count}: only {available} candidates to choose from")


def greedy_naive(reach: sp.csr_array, count: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain greedy: every round, every candidate's marginal gain, and the best (smallest id
    on a tie) is picked. The reference :func:`lazy_greedy` must match; returns the same.

    >>> from sim.world.graph import from_edges
    >>> two_paths = from_edges(np.array([0, 1, 3]), np.array([1, 2, 4]), 5)
    >>> reach = reach_matrix(two_paths, 1.0, 1, np.random.default_rng(0))
    >>> greedy_naive(reach, 2, 1)[0].tolist()
    [0, 3]
    """
    candidates = candidates_of(reach)
    _check_picks(count, candidates.size)
    n = reach.shape[0]
    row_of = np.repeat(np.arange(n), np.diff(reach.indptr))
    covered = np.zeros(reach.shape[1], dtype=bool)
    picks, gains = [], []
    for _ in range(count):
        gain = np.bincount(row_of, weights=~covered[reach.indices], minlength=n)[candidates]
        best = int(np.argmax(gain))
        u = int(candidates[best])
        picks.append(u)
        gains.append(gain[best])
        covered[reach.indices[reach.indptr[u] : reach.indptr[u + 1]]] = True
    return np.array(picks, dtype=np.int64), np.array(gains, dtype=np.float64) / samples


def brute_force(reach: sp.csr_array, count: int, samples: int) -> tuple[np.ndarray, float]:
    """The best set of ``count`` candidates by :func:`spread`, by trying every one (the first
    in lexicographic order on a tie); at most :data:`BRUTE_FORCE_SETS` sets.

    Returns
    -------
    (best, value) : the set (ascending node ids) and its spread.

    >>> from sim.world.graph import from_edges
    >>> two_paths = from_edges(np.array([0, 1, 3]), np.array([1, 2, 4]), 5)
    >>> reach = reach_matrix(two_paths, 1.0, 1, np.random.default_rng(0))
    >>> best, value = brute_force(reach, 2, 1)
    >>> best.tolist(), value
    ([0, 3], 5.0)
    """
    candidates = candidates_of(reach)
    _check_picks(count, candidates.size)
    if math.comb(candidates.size, count) > BRUTE_FORCE_SETS:
        raise ValueError(
            f"brute_force: C({candidates.size}, {count}) sets exceed {BRUTE_FORCE_SETS}"
        )
    best, value = np.empty(0, dtype=np.int64), 0.0
    for combo in itertools.combinations(candidates.tolist(), count):
        v = spread(reach, list(combo), samples)
        if v > value or best.size < count:
            best, value = np.array(combo, dtype=np.int64), v
    return best, value


def top_degree(adj: sp.csr_array, k: int) -> np.ndarray:
    """The ``k`` nodes of highest degree (smallest id first among equals), ascending ids.

    >>> from sim.world.graph import from_edges
    >>> star = from_edges(np.zeros(4, dtype=int), np.arange(1, 5), 6)
    >>> top_degree(star, 2).tolist()
    [0, 1]
    """
    degree = np.diff(adj.indptr)
    return np.sort(np.argsort(-degree, kind="stable")[:k])


def default_candidates(n: int, count: int) -> int:
    """How many highest-degree consumers ``candidates="auto"`` lets CELF consider:
    ``max(4 x count, 1000)``, all of them on a graph that small.

    >>> default_candidates(100_000, 500), default_candidates(10_000, 50), default_candidates(600, 5)
    (2000, 1000, 600)
    """
    return min(n, max(CANDIDATES_PER_OWNER * count, MIN_CANDIDATES))


def celf(
    adj: sp.csr_array,
    edge_prob: np.ndarray | float,
    count: int,
    rng: np.random.Generator,
    samples: int = SAMPLES,
    candidates: int | str | None = "auto",
    *,
    max_entries: int = MAX_ENTRIES,
) -> np.ndarray:
    """Greedy influence maximisation on the word-of-mouth cascade, with CELF.

    The spread of a set is estimated on ``samples`` live-edge samples of the Independent
    Cascade (:func:`reach_matrix`); owners are added one at a time, each the one adding most
    to the spread (:func:`lazy_greedy`). On those samples the set is within ``1 - 1/e`` of the
    best set of its size (Kempe et al. 2003; Nemhauser et al. 1978).

    Parameters
    ----------
    adj : symmetric CSR adjacency.
    edge_prob : per-receiver forward probability (length n; in the model
        ``word_of_mouth.edge_prob`` times trust in friends) or one probability.
    count : number of owners.
    rng : the random generator (the live-edge samples).
    samples : live-edge samples (default :data:`SAMPLES`).
    candidates : the ``candidates`` highest-degree consumers are considered; ``None``: all;
        ``"auto"`` (default): :func:`default_candidates`, ``max(4 x count, 1000)``. Why: the
        reach matrix's memory and time grow with candidates times samples, and the model's
        cascade is near critical (see :func:`reach_matrix`): all 100,000 consumers of the
        default graph at 100 samples would need about a billion entries. The greedy's picks
        are mostly high-degree consumers: with 50 owners of 10,000 consumers the top 200 by
        degree give 99.8% of the unrestricted greedy's spread and the top 500 all of it;
        with 500 owners of 100,000 the top 2,000 give 99% of what the top 4,000 do on the
        same samples, and spending the memory on samples instead pays more (:data:`SAMPLES`).
    max_entries : cap on the reach matrix (:data:`MAX_ENTRIES`).

    Returns
    -------
    The chosen nodes (int64), in pick order.

    Cost, measured on the default graph with the model's edge probability (0.1 x trust in
    friends, mean 0.6): 50 owners of 10,000 consumers in 1.5 s (a 27 MiB reach matrix); 500
    of 100,000 in about 35 s, a 383 MiB matrix, 0.9 GiB at the peak (on a busy machine). Near
    the critical point the cost is steep in the probability: at 0.05 the latter takes 4.5 s
    and 21 MiB.

    >>> from sim.world.graph import from_edges
    >>> two_paths = from_edges(np.array([0, 1, 3]), np.array([1, 2, 4]), 5)
    >>> celf(two_paths, 1.0, 2, np.random.default_rng(0), samples=1).tolist()
    [0, 3]
    """
    n = adj.shape[0]
    _check_count(count, n)
    if candidates == "auto":
        k = default_candidates(n, count)
    elif candidates is None:
        k = n
    elif isinstance(candidates, int | np.integer) and not isinstance(candidates, bool):
        k = int(candidates)
    else:
        raise ValueError(f"candidates = {candidates!r}: expected an integer, None or 'auto'")
    if not count <= k <= n:
        raise ValueError(f"candidates = {k}: expected an integer in {count}..{n}")
    nodes = np.arange(n) if k == n else top_degree(adj, k)
    reach = reach_matrix(adj, edge_prob, samples, rng, nodes, max_entries=max_entries)
    return lazy_greedy(reach, count, samples)[0]
