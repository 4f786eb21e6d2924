"""Word of mouth as an Independent Cascade over the social graph (ODD 7.2, forwarding).

In the Independent Cascade model (Kempe, Kleinberg & Tardos 2003) a newly active node gets one
chance to activate each inactive neighbour, independently, with the edge's probability. Here a
node is *exposed* when a forward reaches her; she becomes *active* (forwards in turn) when the
caller's ``activate`` says so (in the model: she bought and chose to forward). With every exposed
node activating and a constant edge probability this is exactly IC; the docking tests check it.

Edge probability is given per receiver (``edge_prob[v]``: in the model, a base probability times
v's trust in friends), or as one number.

A graph of ``None`` is the well-mixed population: each sender reaches each of the other
``n - 1`` consumers with the same probability, which is the Bass model's imitation term.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from sim.world.ragged import offsets


def forward(
    adj: sp.csr_array | None,
    senders: np.ndarray,
    edge_prob: np.ndarray | float,
    rng: np.random.Generator,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One round of forwarding: every sender tries every neighbour once.

    Parameters
    ----------
    adj : CSR adjacency, or None for a well-mixed population of ``n``.
    senders : node ids of the senders.
    edge_prob : per-receiver probability (array of length n) or one probability.
    rng : the random generator.
    n : population size.

    Returns
    -------
    (sender_pos, receiver) : for every successful try, the sender's position in ``senders``
    and the receiving node.

    >>> import scipy.sparse as sp
    >>> adj = sp.csr_array(np.array([[0, 1], [1, 0]]))
    >>> forward(adj, np.array([0]), 1.0, np.random.default_rng(0), 2)
    (array([0]), array([1], dtype=int32))
    """
    senders = np.asarray(senders)
    if senders.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    scalar = np.isscalar(edge_prob) or np.ndim(edge_prob) == 0
    probs = np.asarray(edge_prob)
    if adj is None:
        # Try everyone at the largest probability, then thin each try to its receiver's own
        # probability: the same independent Bernoulli per (sender, receiver) pair.
        top = float(edge_prob) if scalar else float(np.max(edge_prob, initial=0.0))
        counts = rng.binomial(n - 1, top, size=senders.size)
        sender_pos = np.repeat(np.arange(senders.size), counts)
        receiver = rng.integers(0, n - 1, size=sender_pos.size).astype(np.int32)
        receiver += receiver >= senders[sender_pos]  # skip the sender herself
        if not scalar:
            keep = rng.random(receiver.size) * top < probs[receiver]
            sender_pos, receiver = sender_pos[keep], receiver[keep]
        return sender_pos, receiver
    start = adj.indptr[senders]
    degree = adj.indptr[senders + 1] - start
    sender_pos = np.repeat(np.arange(senders.size), degree)
    offset = offsets(degree)
    receiver = adj.indices[start[sender_pos] + offset]
    prob = float(edge_prob) if scalar else probs[receiver]
    hit = rng.random(receiver.size) < prob
    return sender_pos[hit], receiver[hit]


def first_arrivals(
    sender_pos: np.ndarray, receiver: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Keep one successful try per receiver, chosen at random among her senders."""
    if receiver.size == 0:
        return sender_pos, receiver
    order = rng.permutation(receiver.size)
    _, first = np.unique(receiver[order], return_index=True)
    keep = order[first]
    return sender_pos[keep], receiver[keep]


def independent_cascade(
    adj: sp.csr_array | None,
    seeds: np.ndarray,
    edge_prob: np.ndarray | float,
    rng: np.random.Generator,
    n: int,
    *,
    activate: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    exposed: np.ndarray | None = None,
    max_generations: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run a cascade from ``seeds`` until no one new is activated.

    Parameters
    ----------
    adj, edge_prob, rng, n : as in :func:`forward`.
    seeds : the initially active nodes (already exposed).
    activate : ``activate(receivers, sender_pos)`` returns a boolean mask of the newly exposed
        receivers who become active; ``None`` activates every one (plain IC).
        ``sender_pos`` indexes the previous generation's active nodes, so the caller can carry
        what was forwarded (a product, a channel).
    exposed : boolean array of length n, updated in place; nodes already True are never
        exposed again (they are also not re-activated). Defaults to the seeds.
    max_generations : stop after this many rounds.

    Returns
    -------
    A list with one ``(receivers, sender_pos)`` pair per generation: the nodes newly exposed
    in that round and which active node of the previous round reached each.

    Example: a path 0-1-2 with certain edges reaches everyone in two rounds.

    >>> import scipy.sparse as sp
    >>> adj = sp.csr_array(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    >>> gens = independent_cascade(adj, np.array([0]), 1.0, np.random.default_rng(0), 3)
    >>> [g[0].tolist() for g in gens]
    [[1], [2]]
    """
    if exposed is None:
        exposed = np.zeros(n, dtype=bool)
    active = np.asarray(seeds)
    exposed[active] = True
    generations = []
    rounds = 0
    while active.size and (max_generations is None or rounds < max_generations):
        sender_pos, receiver = forward(adj, active, edge_prob, rng, n)
        fresh = ~exposed[receiver]
        sender_pos, receiver = first_arrivals(sender_pos[fresh], receiver[fresh], rng)
        if receiver.size == 0:
            break
        exposed[receiver] = True
        generations.append((receiver, sender_pos))
        mask = (
            np.ones(receiver.size, dtype=bool)
            if activate is None
            else activate(receiver, sender_pos)
        )
        active = receiver[mask]
        rounds += 1
    return generations
