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

:func:`word_of_mouth` is the model's daily submodel: who forwards what, and the cascade run
with each receiver's purchase decided as she is reached (:func:`sim.world.purchases.expose`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from sim.world.channels import Channel, Source
from sim.world.purchases import expose
from sim.world.ragged import offsets

if TYPE_CHECKING:
    from sim.world.model import CommerceModel


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


def word_of_mouth(model: CommerceModel) -> None:
    """Buyers and satisfied customers forward products; the cascade runs within the day.

    Seeds: today's buyers, each forwarding one of today's orders with chance
    ``forward_rate``, and advocates, satisfied customers recommending their last kept
    purchase with daily chance ``advocacy_rate``; one forward per sender a day, and none
    through a channel or owner link that is closed (:func:`channel_open`). A friend reached
    is exposed once a day (:func:`sim.world.purchases.expose`: offered and settled at once);
    if she buys she forwards with chance ``forward_rate``, and so on (Independent Cascade,
    :func:`independent_cascade`, edge probability ``edge_prob``, times her trust in friends
    when ``trust_weighted``). Every draw is from the stream ``wom``. Changes what offer and
    settle change.
    """
    w, con, o = model.params.word_of_mouth, model.consumers, model.orders
    today = np.arange(model.first_order_today, len(o))
    today = today[model.streams["wom"].permutation(today.size)]
    _, first = np.unique(o["consumer"][today], return_index=True)
    today = today[first]
    buyers_forward = today[model.streams["wom"].random(today.size) < w.forward_rate]
    last = con.last_kept_order
    advocates = np.flatnonzero(last >= 0)
    happy = o["satisfaction"][last[advocates]] >= w.advocacy_threshold
    advocates = advocates[happy & (model.streams["wom"].random(advocates.size) < w.advocacy_rate)]
    seed_rows = np.concatenate([buyers_forward, last[advocates]])
    seed_nodes = np.concatenate([o["consumer"][buyers_forward], advocates])
    # One forward per sender per day; links of a removed streamer or a quit owner are dead.
    _, first = np.unique(seed_nodes, return_index=True)
    seed_rows, seed_nodes = seed_rows[first], seed_nodes[first]
    live = channel_open(
        model, o["channel"][seed_rows], o["owner"][seed_rows], o["product"][seed_rows]
    )
    seed_rows, seed_nodes = seed_rows[live], seed_nodes[live]
    if seed_nodes.size == 0:
        return
    edge_prob = w.edge_prob * con.trust[Source.FRIEND] if w.trust_weighted else w.edge_prob
    payload = {"row": seed_rows}

    def activate(receiver: np.ndarray, sender_pos: np.ndarray) -> np.ndarray:
        rows = payload["row"][sender_pos]
        channel = o["channel"][rows]
        bought = expose(
            model, receiver, o["product"][rows], channel, Source.FRIEND, o["owner"][rows]
        )
        forwards = bought & (model.streams["wom"].random(receiver.size) < w.forward_rate)
        # The new forwarders pass on the product they were sent (same row: same product,
        # channel and owner link).
        payload["row"] = rows[forwards]
        return forwards

    independent_cascade(
        model.graph,
        seed_nodes,
        edge_prob,
        model.streams["wom"],
        model.n,
        activate=activate,
        max_generations=w.max_generations,
    )


def channel_open(
    model: CommerceModel, channel: np.ndarray, owner: np.ndarray, product: np.ndarray
) -> np.ndarray:
    """Can a sale of each ``product`` still go through its ``channel`` (and ``owner``'s link)
    today? Not if the channel is off or banned, the owner quit, or the product's brand has
    left the channel. Returns a boolean mask."""
    ok = model.accounts.contracts[model.catalogue.brand[product], channel.astype(np.int64)]
    ch = model.params.channels
    ok &= (channel != Channel.OWNERS) | ch.owners
    ok &= (channel != Channel.CONVENTIONAL) | ch.conventional
    ok &= (channel != Channel.STREAMER) | model.streamer.active
    via_owner = channel == Channel.OWNERS
    if via_owner.any():
        ok[via_owner] &= model.owners.active[owner[via_owner]]
    return ok
