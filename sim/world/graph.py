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

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sim.world.params import GraphParams, ParameterError


def from_edges(src: np.ndarray, dst: np.ndarray, n: int) -> sp.csr_array:
    """Symmetric 0/1 CSR adjacency from edge end arrays, without self-loops or duplicates.

    >>> a = from_edges(np.array([0, 1, 1]), np.array([1, 2, 2]), 3)
    >>> a.indptr.tolist(), a.indices.tolist()
    ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    keep = src != dst
    src, dst = src[keep], dst[keep]
    rows = np.concatenate([src, dst]).astype(np.int32, copy=False)
    cols = np.concatenate([dst, src]).astype(np.int32, copy=False)
    # Deduplicate by a combined 64-bit key: much faster than COO sum_duplicates at 10M entries.
    # (np.unique hashes, which is several times slower than a sort at this size.)
    key = rows.astype(np.int64) * n + cols
    key.sort()
    key = key[np.r_[True, key[1:] != key[:-1]]]
    rows = (key // n).astype(np.int32)
    cols = (key % n).astype(np.int32)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    data = np.ones(cols.size, dtype=np.int8)
    return sp.csr_array((data, cols, indptr), shape=(n, n))


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

    # Nodes sorted by community, with cumulative theta, so "proportional to theta within the
    # community of u" is one searchsorted over a slice of the cumulative sum.
    order = np.argsort(community, kind="stable")
    cum = np.cumsum(theta[order])
    comm_sorted = community[order]
    first = np.searchsorted(comm_sorted, np.arange(k), side="left")
    last = np.searchsorted(comm_sorted, np.arange(k), side="right")
    cum0 = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    cum1 = cum[last - 1]

    def base_edges(m: int) -> tuple[np.ndarray, np.ndarray]:
        """m Chung-Lu edges, the second end inside the first end's community unless mixing."""
        u = order[np.searchsorted(cum, rng.random(m) * cum[-1], side="right").clip(0, n - 1)]
        local = rng.random(m) >= mixing
        v = np.empty(m, dtype=np.int64)
        cu = community[u[local]]
        r = cum0[cu] + rng.random(cu.size) * (cum1[cu] - cum0[cu])
        v[local] = order[np.searchsorted(cum, r, side="right").clip(0, n - 1)]
        v[~local] = order[
            np.searchsorted(cum, rng.random(int((~local).sum())) * cum[-1], side="right").clip(
                0, n - 1
            )
        ]
        return u, v

    src, dst = base_edges(m_base)
    adj = from_edges(src, dst, n)

    m_close = int(round(m_total * closure))
    if m_close > 0:
        deg = np.diff(adj.indptr)
        hubs = np.flatnonzero(deg >= 2)
        if hubs.size:
            w = hubs[rng.integers(0, hubs.size, m_close)]
            d = deg[w]
            i = rng.integers(0, d)
            j = (i + 1 + rng.integers(0, d - 1)) % d  # a different neighbour
            src = np.concatenate([src, adj.indices[adj.indptr[w] + i]])
            dst = np.concatenate([dst, adj.indices[adj.indptr[w] + j]])
            adj = from_edges(src, dst, n)
    # Duplicates and self-loops were dropped: top the base edges up once towards the target.
    missing = int(m_total - adj.nnz / 2)
    if missing > 0:
        extra_src, extra_dst = base_edges(missing)
        adj = from_edges(np.concatenate([src, extra_src]), np.concatenate([dst, extra_dst]), n)
    return adj, community


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
    components) join a random region.

    >>> path = from_edges(np.arange(5), np.arange(1, 6), 6)
    >>> r = regions(path, 2, np.random.default_rng(0))
    >>> int(np.unique(r).size), bool((np.diff(r) != 0).sum() == 1)  # two contiguous pieces
    (2, True)
    """
    n = adj.shape[0]
    label = np.full(n, -1, dtype=np.int64)
    seeds = rng.choice(n, size=min(max(n_regions, 1), n), replace=False)
    label[seeds] = np.arange(seeds.size)
    row = np.repeat(np.arange(n), np.diff(adj.indptr))
    while True:
        open_edge = (label[row] < 0) & (label[adj.indices] >= 0)
        if not open_edge.any():
            break
        # Each unassigned node adopts the label of one random assigned neighbour.
        rows, labels = row[open_edge], label[adj.indices[open_edge]]
        order = rng.permutation(rows.size)
        _, first = np.unique(rows[order], return_index=True)
        label[rows[order][first]] = labels[order][first]
    rest = label < 0
    label[rest] = rng.integers(0, seeds.size, int(rest.sum()))
    return label


def neighbourhood(adj: sp.csr_array, sources: np.ndarray, hops: int) -> sp.csr_array:
    """Rows: sources; columns: nodes within ``hops`` steps (sources themselves excluded).

    The stored value is the hop distance, so callers can prefer near nodes.
    """
    n = adj.shape[0]
    m = sources.size
    a = adj.astype(np.float32)
    seen = sp.csr_array((np.ones(m, dtype=np.float32), (np.arange(m), sources)), shape=(m, n))
    frontier = seen
    dist = sp.csr_array((m, n), dtype=np.float32)
    for h in range(1, hops + 1):
        reach = (frontier @ a).astype(bool).astype(np.float32)
        new = reach - reach.multiply(seen.astype(bool))
        new.eliminate_zeros()
        new = new.astype(bool).astype(np.float32)
        dist = dist + new * h
        seen = seen + new
        frontier = new
    dist.eliminate_zeros()
    return dist.tocsr()


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
