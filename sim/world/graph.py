"""The social graph: generated or loaded, always held as a symmetric CSR adjacency.

Consumers are nodes ``0..n-1``; friendship is undirected. Everything downstream (group
recruitment, word of mouth) reads only ``indptr`` and ``indices`` of a
:class:`scipy.sparse.csr_array`, so a million-node graph costs tens of MiB, not gigabytes of
Python objects.

The generator (:func:`community_graph`) is a degree-corrected stochastic block model plus a round
of triadic closure, built directly as arrays:

1. community sizes are lognormal with mean ``community_size``; each node gets a lognormal degree
   propensity ``theta`` (sd ``degree_sigma`` on the log scale), which gives heavy-tailed degrees;
2. ``n * mean_degree / 2 * (1 - closure)`` edges are drawn: the first end with probability
   proportional to ``theta``; the second, with probability ``1 - mixing``, proportional to
   ``theta`` within the first end's community, otherwise anywhere (Chung-Lu);
3. triadic closure adds ``closure`` of the edges by joining two random neighbours of a random
   node, which raises clustering the way friends-of-friends become friends;
4. self-loops and duplicates are dropped, and base edges topped up once for what was lost.

References: Karrer & Newman (2011) degree-corrected SBM; Chung & Lu (2002); Holme & Kim (2002)
for triadic closure as the source of clustering.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numba import njit

from sim.world.kernels import AHEAD, prefetch
from sim.world.params import GraphParams, ParameterError


def from_edges(src: np.ndarray, dst: np.ndarray, n: int) -> sp.csr_array:
    """Symmetric 0/1 CSR adjacency from edge end arrays, without self-loops or duplicates.

    >>> a = from_edges(np.array([0, 1, 1]), np.array([1, 2, 2]), 3)
    >>> a.indptr.tolist(), a.indices.tolist()
    ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    return _adjacency(_upper_triangle(src, dst, n))


def _index_dtype(*sizes: int) -> type[np.signedinteger]:
    """int32 for sparse indices where every size fits (half the memory traffic), else int64."""
    return np.int32 if max(sizes, default=0) < np.iinfo(np.int32).max else np.int64


def _upper_triangle(src: np.ndarray, dst: np.ndarray, n: int) -> sp.csr_array:
    """The distinct undirected edges, self-loops dropped, as the upper triangle (row < column)
    of the adjacency: a canonical boolean CSR.

    One entry per undirected edge is half the work of both directions; COO to CSR is a
    counting sort by row, then only each row's few columns are sorted, which is several times
    faster than sorting all edges (or np.unique's hashing).
    """
    src, dst = np.asarray(src), np.asarray(dst)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    index = _index_dtype(n, src.size)
    lo = np.minimum(src, dst).astype(index)
    hi = np.maximum(src, dst).astype(index)
    upper = sp.coo_array((np.ones(lo.size, dtype=bool), (lo, hi)), shape=(n, n)).tocsr()
    upper.sum_duplicates()  # (a no-op if tocsr already did it)
    return upper


def _adjacency(upper: sp.csr_array) -> sp.csr_array:
    """Symmetric 0/1 CSR adjacency (int8 data, int64 indices, sorted columns) from its upper
    triangle (:func:`_upper_triangle`).

    Row ``r`` holds its lower neighbours, then its higher ones, each ascending, so it is sorted
    without a sort (:func:`_mirror`).
    """
    n = upper.shape[0]
    lower_count = np.bincount(upper.indices, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lower_count + np.diff(upper.indptr), out=indptr[1:])
    cols = _mirror(upper.indptr, upper.indices, indptr)
    return sp.csr_array((np.ones(cols.size, dtype=np.int8), cols, indptr), shape=(n, n))


@njit(cache=True, nogil=True)
def _mirror(upper_ptr: np.ndarray, upper_cols: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The columns of the symmetric adjacency whose upper triangle is ``upper_ptr,
    upper_cols`` and whose rows begin at ``indptr``.

    Rows are visited in ascending order; row ``r`` copies its upper row after its lower
    neighbours and, for each higher neighbour ``c``, appends ``r`` to ``c``'s lower
    neighbours. Every lower neighbour of ``r`` is a row before it, so its lower part is complete
    and ascending by the time it is reached: one pass, where a transpose and a merge made
    several.
    """
    n = indptr.size - 1
    cols = np.empty(indptr[n], dtype=np.int64)
    lower_next = indptr[:n].copy()  # where each row's next lower neighbour goes
    last = upper_cols.size - 1
    for r in range(n):
        at = lower_next[r]  # (row r's lower part is complete: its upper part starts here)
        for j in range(upper_ptr[r], upper_ptr[r + 1]):
            # The higher neighbours' rows are scattered: start loading their slot two strides
            # on, and the place it points to one stride on.
            prefetch(lower_next, upper_cols[min(j + 2 * AHEAD, last)])
            prefetch(cols, lower_next[upper_cols[min(j + AHEAD, last)]])
            c = upper_cols[j]
            cols[at] = c
            at += 1
            cols[lower_next[c]] = r
            lower_next[c] += 1
    return cols


def community_graph(
    n: int,
    mean_degree: float,
    community_size: float,
    mixing: float,
    degree_sigma: float,
    closure: float,
    rng: np.random.Generator,
) -> tuple[sp.csr_array, np.ndarray]:
    """Clustered, heavy-tailed graph with communities (see the module docstring).

    Parameters
    ----------
    n : number of nodes.
    mean_degree : target mean degree (duplicates are dropped, then topped up once; the
        result is within a few percent of the target).
    community_size : mean community size.
    mixing : share of base edges whose second end is drawn outside the community structure.
    degree_sigma : log-sd of the degree propensity.
    closure : edges added by triadic closure, as a share of all edges.
    rng : numpy Generator; the only source of randomness.

    Returns
    -------
    (adjacency, community) : the CSR adjacency and each node's community id.

    Example
    -------
    >>> a, c = community_graph(1000, 8, 50, 0.1, 0.8, 0.3, np.random.default_rng(1))
    >>> a.shape, bool(7 < a.sum() / 1000 < 8.5)
    ((1000, 1000), True)
    """
    # Community sizes: lognormal, at least 2, summing to n.
    sigma = 0.6
    mu = np.log(community_size) - sigma**2 / 2
    draws: list[np.ndarray] = []
    total = 0
    while total < n:
        draw = np.maximum(
            2, rng.lognormal(mu, sigma, size=max(16, int(n / max(community_size, 1))))
        )
        draw = draw.astype(np.int64)
        draws.append(draw)
        total += int(draw.sum())
    sizes = np.concatenate(draws)
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, n)) + 1
    sizes = sizes[:k]
    sizes[-1] -= int(ends[k - 1] - n)
    community = np.repeat(np.arange(k, dtype=np.int32), sizes)
    rng.shuffle(community)

    theta = rng.lognormal(0.0, degree_sigma, size=n)
    m_total = n * mean_degree / 2.0
    m_base = int(round(m_total * (1.0 - closure)))

    # Nodes sorted by community (ascending within: a counting sort, CSR to CSC), with
    # cumulative theta, so "proportional to theta within the community of u" is one search over
    # a slice of the cumulative sum.
    index = _index_dtype(n)
    by_community = sp.csr_array(
        (np.ones(n, dtype=bool), community.astype(index), np.arange(n + 1, dtype=index)), (n, k)
    ).tocsc()
    order = by_community.indices.astype(np.int64)
    cum = np.cumsum(theta[order])
    search = _right_search(cum)
    first, last = by_community.indptr[:-1], by_community.indptr[1:]
    cum0 = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    span = cum[last - 1] - cum0

    def draw_node(x: np.ndarray) -> np.ndarray:
        """The node at each cumulative-theta position ``x``."""
        at = search(x)
        np.minimum(at, n - 1, out=at)
        return order[at]

    def base_edges(m: int) -> tuple[np.ndarray, np.ndarray]:
        """m Chung-Lu edges, the second end inside the first end's community unless mixing."""
        # (In place where the arithmetic allows: fresh memory is slow to come by.)
        x = rng.random(m)
        x *= cum[-1]
        u = draw_node(x)
        local = rng.random(m) >= mixing
        v = np.empty(m, dtype=np.int64)
        cu = community[u[local]]
        r = rng.random(cu.size)
        r *= span[cu]
        r += cum0[cu]
        v[local] = draw_node(r)
        x = rng.random(int((~local).sum()))
        x *= cum[-1]
        v[~local] = draw_node(x)
        return u, v

    # The edge set is kept as its upper triangle, merged as edges are added; the adjacency is
    # built once, at the end.
    upper = _upper_triangle(*base_edges(m_base), n)

    m_close = int(round(m_total * closure))
    if m_close > 0:
        lower = upper.tocsc()  # each node's lower neighbours (the transpose)
        n_lower = np.diff(lower.indptr)
        deg = (np.diff(upper.indptr) + n_lower).astype(np.int64)
        hubs = np.flatnonzero(deg >= 2)
        if hubs.size:
            w = hubs[rng.integers(0, hubs.size, m_close)]
            d = deg[w]
            i = rng.integers(0, d)
            j = (i + 1 + rng.integers(0, d - 1)) % d  # a different neighbour

            # w's k-th neighbour in the adjacency's (sorted) order: lower ones first.
            n_low = n_lower[w]
            low_at, high_at = lower.indptr[w], upper.indptr[w] - n_low
            last_slot = upper.nnz - 1

            def friend(k: np.ndarray) -> np.ndarray:
                low = lower.indices[np.minimum(low_at + k, last_slot)]
                high = upper.indices[np.clip(high_at + k, 0, last_slot)]
                return np.where(k < n_low, low, high)

            upper = upper + _upper_triangle(friend(i), friend(j), n)
    # Duplicates and self-loops were dropped: top the base edges up once towards the target.
    missing = int(m_total - upper.nnz)
    if missing > 0:
        upper = upper + _upper_triangle(*base_edges(missing), n)
    return _adjacency(upper), community


def _right_search(cum: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> np.searchsorted(cum, x, side="right")`` for a non-decreasing ``cum`` of
    non-negative values, exactly, several times faster for millions of queries.

    np.searchsorted's binary search is slow on random queries (about 20 unpredictable branches
    and cache misses each). A guide table on the value axis does most of it: bucket ``f(x) =
    floor(x * scale)`` is monotone, so every element in a lower bucket than x is <= x and
    every one in a higher bucket is > x; only the elements of x's own bucket (one on average)
    are searched (:func:`_bucket_search`, compiled, loading the buckets of later queries
    ahead: 2 times numpy's speed at a million elements, 3.5 times at ten million).
    """
    n = cum.size
    buckets = max(n, 1)
    scale = buckets / cum[-1] if n and cum[-1] > 0 else 0.0
    key = np.minimum((cum * scale).astype(np.int64), buckets - 1)
    count = np.bincount(key, minlength=buckets)
    begin = np.zeros(buckets + 1, dtype=np.int64)  # elements in the buckets below
    np.cumsum(count, out=begin[1:])

    def search(x: np.ndarray) -> np.ndarray:
        return _bucket_search(cum, begin, float(scale), np.asarray(x, dtype=np.float64))

    return search


@njit(cache=True, nogil=True)
def _bucket_search(cum: np.ndarray, begin: np.ndarray, scale: float, x: np.ndarray) -> np.ndarray:
    """Per query: how many elements of ``cum`` are <= it, searching only its bucket
    (``begin[b] : begin[b + 1]`` are bucket ``b``'s elements; see :func:`_right_search`)."""
    top = begin.size - 2  # the last bucket
    out = np.empty(x.size, dtype=np.int64)
    last = x.size - 1
    for q in range(x.size):
        # Random queries wait on memory twice (the bucket, then its elements): start both
        # loads for later queries, the bucket two strides ahead, the elements one.
        prefetch(begin, min(int(x[min(q + 2 * AHEAD, last)] * scale), top))
        prefetch(cum, begin[min(int(x[min(q + AHEAD, last)] * scale), top)])
        v = x[q]
        b: int = min(int(v * scale), top)
        lo, hi = begin[b], begin[b + 1]
        while lo < hi:  # the first element of the bucket above v
            mid = (lo + hi) // 2
            if cum[mid] <= v:
                lo = mid + 1
            else:
                hi = mid
        out[q] = lo
    return out


def load_edgelist(path: str | Path) -> tuple[sp.csr_array, np.ndarray]:
    """Load an undirected edge list (two columns per line; '#' comments; ',' or whitespace).

    Node ids may be any integers or strings; they are relabelled ``0..n-1`` in sorted order.
    Returns the adjacency and the original labels (``labels[i]`` is node ``i``'s id).
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"graph.edgelist_path = '{path}': file not found")
    src, dst = [], []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.replace(",", " ").split()
            if len(parts) < 2:
                raise ParameterError(f"{path}:{lineno}: an edge needs two node ids, got {line!r}")
            src.append(parts[0])
            dst.append(parts[1])
    if not src:
        raise ParameterError(f"{path}: the edge list has no edges")
    ends = np.array(src + dst)
    try:  # integer ids sort as numbers, so "10" comes after "9"
        ends = ends.astype(np.int64)
    except ValueError:
        pass
    labels, inverse = np.unique(ends, return_inverse=True)
    m = len(src)
    return from_edges(inverse[:m], inverse[m:], labels.size), labels


def build_graph(p: GraphParams, n: int, rng: np.random.Generator) -> sp.csr_array | None:
    """The graph a run uses: ``None`` for a well-mixed population."""
    if p.topology == "well_mixed":
        return None
    if p.topology == "edgelist":
        return load_edgelist(p.edgelist_path)[0]
    return community_graph(
        n, p.mean_degree, p.community_size, p.mixing, p.degree_sigma, p.triadic_closure, rng
    )[0]


def regions(adj: sp.csr_array, n_regions: int, rng: np.random.Generator) -> np.ndarray:
    """Split the graph into ``n_regions`` contiguous regions (a graph Voronoi partition).

    ``n_regions`` random seed nodes each start a region; regions grow one hop at a time, a node
    joining the region of a random already-assigned friend. Nodes no seed reaches (other
    components) join a random region. ``adj`` is symmetric with sorted columns, as
    :func:`from_edges` builds it.

    >>> path = from_edges(np.arange(5), np.arange(1, 6), 6)
    >>> r = regions(path, 2, np.random.default_rng(0))
    >>> int(np.unique(r).size), bool((np.diff(r) != 0).sum() == 1)  # two contiguous pieces
    (2, True)
    """
    n = adj.shape[0]
    index = _index_dtype(adj.nnz, n)
    label = np.full(n, -1, dtype=np.int64)
    seeds = rng.choice(n, size=min(max(n_regions, 1), n), replace=False)
    label[seeds] = np.arange(seeds.size)
    newest = np.sort(seeds)
    while True:
        # The open edges (unassigned node -> assigned friend). Every unassigned node with an
        # assigned friend joins a region each round, so (the graph being symmetric) such
        # friends were all assigned in the last round: the open edges are the newest nodes'
        # edges to unassigned friends, not a scan of every edge each round.
        friend, found_ptr = _open_edges(adj.indptr, adj.indices, label, newest)
        # Rows: the newest nodes; columns: their unassigned friends. Transposed (a counting
        # sort, CSR to CSC), these are the open edges in the adjacency's order (by unassigned
        # node, friends ascending: the adjacency's columns are sorted).
        found = sp.csr_array(
            (np.ones(friend.size, dtype=bool), friend, found_ptr.astype(index, copy=False)),
            shape=(newest.size, n),
        ).tocsc()
        if found.nnz == 0:
            break
        joining = np.flatnonzero(np.diff(found.indptr))
        labels = label[newest[found.indices]]
        # Each unassigned node adopts the label of one random assigned neighbour: the open
        # edge of hers that comes first in a random permutation (least rank), found per node
        # with a segmented minimum over her (contiguous) open edges instead of np.unique's sort.
        order = rng.permutation(found.nnz)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        first = order[np.minimum.reduceat(rank, found.indptr[joining])]
        newest = joining
        label[newest] = labels[first]
    rest = label < 0
    label[rest] = rng.integers(0, seeds.size, int(rest.sum()))
    return label


@njit(cache=True, nogil=True)
def _open_edges(
    indptr: np.ndarray, indices: np.ndarray, label: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The friends of ``rows`` still unlabelled (``label < 0``), row after row, as a CSR's
    ``indices`` and ``indptr`` (rows: ``rows``): one pass, where selecting the rows' slots,
    gathering and masking them made four."""
    total = 0
    for r in rows:
        total += indptr[r + 1] - indptr[r]
    friend = np.empty(total, dtype=indices.dtype)
    ptr = np.zeros(rows.size + 1, dtype=np.int64)
    last = indices.size - 1
    k = 0
    for i in range(rows.size):
        r = rows[i]
        for j in range(indptr[r], indptr[r + 1]):
            # The labels are read at random: start loading the one a few slots on.
            prefetch(label, indices[min(j + AHEAD, last)])
            f = indices[j]
            friend[k] = f
            k += label[f] < 0  # kept (branch-free: whether a friend is labelled is random)
        ptr[i + 1] = k
    return friend[:k], ptr


def neighbourhood(adj: sp.csr_array, sources: np.ndarray, hops: int) -> sp.csr_array:
    """Rows: sources; columns: nodes within ``hops`` steps (sources themselves excluded).

    The stored value is the hop distance, so callers can prefer near nodes. Columns are sorted;
    indices are int32 where they fit. A breadth-first search from each source, compiled
    (:func:`_hop_balls`): its work is the size of the balls, where a sparse product's is
    several passes over them.

    >>> path = from_edges(np.array([0, 1, 2]), np.array([1, 2, 3]), 4)
    >>> neighbourhood(path, np.array([0, 2]), 2).toarray().tolist()
    [[0.0, 1.0, 2.0, 0.0], [2.0, 1.0, 0.0, 1.0]]
    """
    n = adj.shape[0]
    m = sources.size
    if not 0 <= hops < 16:
        raise ValueError(f"hops = {hops}: from 0 to 15 (a ball's entries code the hop in 4 bits)")
    # (int32 node ids where they fit: the search is random reads, half the bytes is faster)
    nodes = adj.indices.astype(_index_dtype(n), copy=False)
    indptr, indices, dist = _hop_balls(adj.indptr, nodes, adj.data != 0, sources, hops, n)
    index = _index_dtype(n, m, int(indptr[-1]))  # int32 only where the balls' total fits
    return sp.csr_array((dist, indices.astype(index), indptr.astype(index)), shape=(m, n))


@njit(cache=True, nogil=True)
def _hop_balls(
    indptr: np.ndarray,
    indices: np.ndarray,
    live: np.ndarray,
    sources: np.ndarray,
    hops: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each source, the nodes within ``hops`` steps over the ``live`` entries of a CSR
    (itself excluded), sorted, with their hop distance: (indptr, indices, distance)."""
    m = sources.size
    seen = np.full(n, -1, dtype=np.int32)  # the last row whose search reached each node
    out_ptr = np.zeros(m + 1, dtype=np.int64)
    key = np.empty(max(16, 64 * m), dtype=np.int64)  # node * 16 + hop, grown as needed
    frontier = np.empty(16, dtype=np.int64)
    spare = np.empty(16, dtype=np.int64)  # the radix sort's buffer, grown as needed
    node_bits = 1
    while (1 << node_bits) < n:
        node_bits += 1
    found = 0
    last_edge = indices.size - 1
    for r in range(m):
        s = sources[r]
        seen[s] = r
        frontier[0] = s
        width = 1
        row_start = found
        for h in range(1, hops + 1):
            next_start = found
            for f in range(width):
                # Load ahead (the frontier is scattered over the graph): the row bounds of
                # the node two steps on, the neighbours of the next one.
                prefetch(indptr, frontier[min(f + 2, width - 1)])
                prefetch(indices, indptr[frontier[min(f + 1, width - 1)]])
                v = frontier[f]
                for e in range(indptr[v], indptr[v + 1]):
                    prefetch(seen, indices[min(e + 8, last_edge)])
                    w = indices[e]
                    if not live[e] or seen[w] == r:
                        continue
                    seen[w] = r
                    if found == key.size:
                        grown = np.empty(2 * key.size, dtype=np.int64)
                        grown[:found] = key[:found]
                        key = grown
                    key[found] = w * 16 + h
                    found += 1
            width = found - next_start
            if width > frontier.size:
                frontier = np.empty(2 * width, dtype=np.int64)
            for f in range(width):
                frontier[f] = key[next_start + f] // 16
        if found - row_start > spare.size:
            spare = np.empty(2 * (found - row_start), dtype=np.int64)
        _sort_by_node(key[row_start:found], spare, node_bits)  # columns in order
        out_ptr[r + 1] = found
    nodes = key[:found] // 16
    dist = (key[:found] % 16).astype(np.float32)
    return out_ptr, nodes, dist


@njit(cache=True, nogil=True)
def _sort_by_node(key: np.ndarray, spare: np.ndarray, node_bits: int) -> None:
    """Sort ``key`` (``node * 16 + hop``, each node once) in place by node.

    A least-significant-digit radix sort, 8 bits of the node a pass, for the long rows (a
    ball has a thousand nodes or so), where it is several times faster than a comparison
    sort; ``spare`` is a buffer at least as long as ``key``.
    """
    size = key.size
    if size < 64:
        key.sort()
        return
    src, dst = key, spare[:size]
    count = np.empty(257, dtype=np.int64)
    passes = (node_bits + 7) // 8
    for shift in range(4, 4 + 8 * passes, 8):
        count[:] = 0
        for i in range(size):
            count[((src[i] >> shift) & 255) + 1] += 1
        for d in range(1, 257):
            count[d] += count[d - 1]
        for i in range(size):
            d = (src[i] >> shift) & 255
            dst[count[d]] = src[i]
            count[d] += 1
        src, dst = dst, src
    if passes % 2:  # an odd number of passes left the result in the buffer
        key[:] = src


def _sub_csr(a: sp.csr_array, keep: np.ndarray, data: np.ndarray) -> sp.csr_array:
    """The entries of a canonical CSR where ``keep`` holds, with new ``data``."""
    kept_before = np.zeros(keep.size + 1, dtype=a.indptr.dtype)
    np.cumsum(keep, out=kept_before[1:])
    return sp.csr_array((data, a.indices[keep], kept_before[a.indptr]), shape=a.shape)


def random_neighbour(
    adj: sp.csr_array | None, nodes: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """One friend of each node, uniformly among her neighbours (-1 for a node with none).

    Without a graph (well mixed) the friend is any other consumer.

    >>> adj = from_edges(np.array([0, 0]), np.array([1, 2]), 4)
    >>> random_neighbour(adj, np.array([1, 3]), 4, np.random.default_rng(0)).tolist()
    [0, -1]
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    u = rng.random(nodes.size)
    if adj is None:
        other = (nodes + 1 + (u * (n - 1)).astype(np.int64)) % n
        return other if n > 1 else np.full(nodes.size, -1, dtype=np.int64)
    start = adj.indptr[nodes].astype(np.int64)
    degree = adj.indptr[nodes + 1].astype(np.int64) - start
    pick = start + (u * degree).astype(np.int64)
    friend = adj.indices[np.minimum(pick, max(adj.indices.size - 1, 0))].astype(np.int64)
    return np.where(degree > 0, friend, -1)
