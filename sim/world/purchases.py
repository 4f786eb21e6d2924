"""Exposure and purchase: the one door every channel goes through (ODD 7.2, 7.3).

Every exposure, whichever seller or friend made it, passes through :func:`offer`, which
records it (exposures, reach, fit) and makes its purchase draw
(:func:`sim.world.funnel.purchase_probability`) against the needs open at that moment. The
draws that may become orders wait as the day's *candidates*; :func:`settle` then decides the
candidates of every channel together, in the order of their own random keys, against shared
needs and budgets (:func:`sim.world.funnel.resolve_purchases`), writes the orders and books
them (:func:`sim.world.money.book_orders`). :func:`expose` does both at once, for word of
mouth, generation by generation.

Every random number of an exposure comes from its channel's own stream (a friend's forward:
the word-of-mouth stream), so a channel's draws do not depend on when the schedule calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from sim.world import funnel, kernels, pieces
from sim.world.channels import Channel, Source
from sim.world.money import book_orders
from sim.world.orders import PENDING

if TYPE_CHECKING:
    from sim.world.model import CommerceModel
    from sim.world.params import PurchaseParams

# The process stream a channel's own exposures draw from (see model.PROCESS_STREAMS).
_CHANNEL_STREAM = {
    Channel.OWNERS: "owners",
    Channel.STREAMER: "streamer",
    Channel.CONVENTIONAL: "search",
}


def offer(
    model: CommerceModel,
    consumer: np.ndarray,
    product: np.ndarray,
    channel: np.ndarray | int,
    source: int,
    owner: np.ndarray | None = None,
    hype: np.ndarray | None = None,
) -> dict[str, np.ndarray] | None:
    """Show products to consumers: record reach and exposures, and draw each exposure's
    purchase against today's needs.

    Parameters
    ----------
    model : the world; its recorder, reach flags (``reached``, ``month_reached``) and today's
        candidates (``candidates``) are written.
    consumer, product : per exposure.
    channel : the channel of every exposure (one code), or one per exposure.
    source : who made the exposures (:class:`~sim.world.channels.Source`).
    owner : per exposure, the owner whose link it went through (default: none, -1).
    hype : per exposure, when its format varies within the channel (an owner's post on 2b
        material); by default the hype of the channel's format (``model.format_hype``).

    The draws that could become orders (candidates) are appended to ``model.candidates`` and
    wait for :func:`settle`, which decides the day's purchases of every channel together.
    Every random number comes from the channel's own stream (word of mouth: its own).

    Returns
    -------
    The batch of candidates (a dict of per-candidate arrays; ``position`` indexes the
    exposures), or ``None`` if there are none.
    """
    size = consumer.size
    if size == 0:
        return None
    p = model.params
    code = np.asarray(channel, dtype=np.int8).reshape(-1)
    if hype is None:
        hype = model.format_hype[code]
    if source == Source.FRIEND:
        hype = hype * p.word_of_mouth.hype_carryover
    hype = np.asarray(hype, dtype=np.float64).reshape(-1)
    own = _CHANNEL_STREAM[Channel(int(code[0]))]
    rng = model.streams["wom" if source == Source.FRIEND else own]
    u = rng.random(size)
    # One compiled pass records the exposures (reach, fit, counts) and makes every draw; a
    # large batch in two pieces (sim.world.pieces).
    fit_sum, exposures = np.zeros(len(Channel)), np.zeros(len(Channel))
    inputs = _draw_inputs(model, source)

    def draws(piece: slice, fit_sum: np.ndarray, exposures: np.ndarray, fits: np.ndarray):
        return kernels.purchase_draws(
            consumer[piece],
            product[piece],
            code if code.size == 1 else code[piece],
            hype if hype.size == 1 else hype[piece],
            u[piece],
            *inputs,
            fit_sum,
            exposures,
            fits,
        )

    cut = pieces.halves(size)
    if cut == size:
        cand = draws(slice(None), fit_sum, exposures, _NO_FITS)
    else:
        rest = code if code.size == 1 else code[cut:]
        first, second = _two_pieces(
            lambda *totals: draws(slice(cut), *totals),
            lambda *totals: draws(slice(cut, None), *totals),
            size - cut,
            rest,
            fit_sum,
            exposures,
        )
        cand = np.concatenate([first, second + cut])
    _record(model, source, fit_sum, exposures)
    if cand.size == 0:
        return None
    return _candidates(
        model,
        rng,
        source,
        cand,
        u[cand],
        consumer[cand],
        product[cand],
        np.broadcast_to(code, (size,))[cand],
        np.broadcast_to(hype, (size,))[cand],
        owner[cand] if owner is not None else None,
    )


def offer_posts(
    model: CommerceModel,
    openers: np.ndarray,
    owner: np.ndarray,
    start: np.ndarray,
    count: np.ndarray,
    products: np.ndarray,
    stocked: np.ndarray,
    owner_hype: np.ndarray,
) -> dict[str, np.ndarray] | None:
    """:func:`offer` of the owners' posts: each opener (of ``owner``) is shown every stocked
    product her owner posted (``products[start[o] : start[o] + count[o]]``, -1 unstocked;
    ``stocked[o]`` of them), with her owner's hype ``owner_hype[o]``: the same draws, from the
    stream ``owners``, as offering those exposures opener by opener, product by product, but
    without making them (one compiled pass, :func:`sim.world.kernels.post_purchase_draws`)."""
    size = int(stocked[owner].sum())
    if size == 0:
        return None
    rng = model.streams["owners"]
    u = rng.random(size)
    fit_sum, exposures = np.zeros(len(Channel)), np.zeros(len(Channel))
    inputs = _draw_inputs(model, Source.OWNER)
    hype_of = np.asarray(owner_hype, dtype=np.float64)

    def draws(piece: slice, draws_of: slice, fit_sum: np.ndarray, exposures: np.ndarray, fits):
        return kernels.post_purchase_draws(
            openers[piece],
            owner[piece],
            start,
            count,
            products,
            hype_of,
            int(Channel.OWNERS),
            u[draws_of],
            *inputs,
            fit_sum,
            exposures,
            fits,
        )

    cut = pieces.halves(openers.size)
    if cut == openers.size:
        cand, who, item, whose, hype = draws(slice(None), slice(None), fit_sum, exposures, _NO_FITS)
    else:
        seen = int(stocked[owner[:cut]].sum())  # the exposures of the first piece's openers
        first, second = _two_pieces(
            lambda *totals: draws(slice(cut), slice(seen), *totals),
            lambda *totals: draws(slice(cut, None), slice(seen, None), *totals),
            size - seen,
            np.array([Channel.OWNERS], dtype=np.int8),
            fit_sum,
            exposures,
        )
        cand = np.concatenate([first[0], second[0] + seen])
        pairs = zip(first[1:], second[1:], strict=True)
        who, item, whose, hype = (np.concatenate(pair) for pair in pairs)
    _record(model, Source.OWNER, fit_sum, exposures)
    if cand.size == 0:
        return None
    channel = np.full(cand.size, Channel.OWNERS, dtype=np.int8)
    return _candidates(model, rng, Source.OWNER, cand, u[cand], who, item, channel, hype, whose)


# Empty: the kernels add fits to their totals themselves. (float32, the consumers' fit: a
# stored fit is the value one pass would add.)
_NO_FITS = np.zeros(0, dtype=np.float32)


def _two_pieces[T](
    first: Callable[[np.ndarray, np.ndarray, np.ndarray], T],
    second: Callable[[np.ndarray, np.ndarray, np.ndarray], T],
    second_size: int,
    second_channel: np.ndarray,
    fit_sum: np.ndarray,
    exposures: np.ndarray,
) -> tuple[T, T]:
    """A batch's draws in two pieces (:mod:`sim.world.pieces`), each called with the totals it
    adds to and where it stores its fits: the first adds its fits to ``fit_sum``; the second
    stores its ``second_size`` fits, added to ``fit_sum`` after the first's, in order
    (``second_channel`` per fit, or one), so the totals are one pass's to the bit. Exposure
    counts are whole numbers, which add in any order."""
    fits = np.empty(second_size, dtype=_NO_FITS.dtype)
    counted = np.zeros_like(exposures)
    done = pieces.both(
        lambda: first(fit_sum, exposures, _NO_FITS),
        lambda: second(np.zeros_like(fit_sum), counted, fits),
    )
    kernels.add_fits(fits, second_channel, fit_sum)
    exposures += counted
    return done


_DrawInputs = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    int,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]


def _draw_inputs(model: CommerceModel, source: int) -> _DrawInputs:
    """What every compiled purchase draw reads, in the kernels' order: the products'
    categories; the consumers' fit, trust in ``source``, impulsiveness and price sensitivity;
    the log price per channel and product; open needs; the day; the purchase coefficients;
    and the reach flags it marks."""
    con = model.consumers
    return (
        model.catalogue.category,
        con.fit,
        con.trust[source],
        con.impulsiveness,
        con.price_sensitivity,
        _log_price(model),
        model.demand.need_until,
        model.day,
        _coefficients(model.params.purchase),
        model.reached,
        model.month_reached,
    )


def _record(model: CommerceModel, source: int, fit_sum: np.ndarray, exposures: np.ndarray) -> None:
    """Book a batch's exposures and fit per channel in the day's record."""
    model.recorder.add_totals("exposures", exposures)
    if source == Source.FRIEND:
        model.recorder.add_totals("wom_exposures", exposures)
    model.recorder.add_fit_totals(fit_sum, exposures)


def _candidates(
    model: CommerceModel,
    rng: np.random.Generator,
    source: int,
    cand: np.ndarray,
    u: np.ndarray,
    who: np.ndarray,
    item: np.ndarray,
    channel: np.ndarray,
    hype: np.ndarray,
    owner: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The batch of today's candidates (exposures at positions ``cand`` whose draws ``u`` fell
    below the chance with the need term), with their own random numbers for delivery (from
    ``rng``), appended to ``model.candidates``."""
    p, con, cat = model.params, model.consumers, model.catalogue
    k = cand.size
    category = cat.category[item]
    fit = con.fit[who, category]
    paid = model.terms.paid(cat.list_price[item], channel)
    need_open = model.demand.is_open(who, category, model.day)
    # A candidate is sure to buy if its draw is also below the chance without the need.
    no_need = funnel.purchase_probability(
        p.purchase,
        fit,
        con.trust[source, who],
        hype,
        con.impulsiveness[who],
        paid / cat.median_price,
        con.price_sensitivity[who],
        0.0,
    )
    sure = ~need_open | (u < no_need)
    fate = rng.random((4, k), dtype=np.float32)
    batch = {
        "position": cand,
        "consumer": who,
        "product": item,
        "category": category,
        "channel": channel,
        "source": np.full(k, source, dtype=np.int8),
        "owner": owner if owner is not None else np.full(k, -1, dtype=np.int32),
        "paid": paid,
        "fit": fit,
        "hype": hype,
        "need_open": need_open,
        "sure": sure,
        "key": fate[0],
        "u_defect": fate[1],
        "u_resolve": fate[2],
        "u_return": fate[3],
        "z_fit": rng.standard_normal(k, dtype=np.float32),
        "lag": rng.integers(p.delivery.lag_min, p.delivery.lag_max + 1, k),
    }
    model.candidates.append(batch)
    return batch


def _coefficients(p: PurchaseParams) -> np.ndarray:
    """The purchase logit's coefficients in :func:`kernels.purchase_draws`' order."""
    return np.array([p.intercept, p.fit, p.trust, p.hype, p.price, p.need], dtype=np.float64)


def _log_price(model: CommerceModel) -> np.ndarray:
    """Channel x product: ``log(paid / median price)`` at today's terms (a few thousand
    logs instead of one per exposure)."""
    cat = model.catalogue
    codes = np.arange(len(Channel))
    paid = model.terms.paid(cat.list_price[None, :], codes[:, None])
    return np.log(paid / cat.median_price)


def settle(model: CommerceModel) -> None:
    """Decide the purchases offered so far today, all channels together.

    Candidates are met in the order of their own random keys, so no channel gets first pick
    by its place in the schedule; a purchase fills its need (a later candidate of the same
    need buys only if it would have without it) and spends her budget
    (:func:`sim.world.funnel.resolve_purchases`).

    Changes: empties ``model.candidates`` and gives each batch a ``bought`` mask over its
    candidates; the purchases fill needs and spend budgets (``model.demand``), mark the month's
    buyers (``model.month_bought``), are written to ``model.orders`` with their channel and
    source (in channel order) and added to ``model.pending``, and are booked
    (:func:`sim.world.money.book_orders`); a non-follower who bought a streamer product may
    follow her (stream ``follow``).
    """
    batches, model.candidates = model.candidates, []
    if not batches:
        return
    c = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    d = model.demand
    bought = funnel.resolve_purchases(
        c["consumer"],
        c["category"],
        c["key"],
        c["sure"],
        c["need_open"],
        c["paid"],
        d.left(c["consumer"]),
    )
    split = np.cumsum([b["consumer"].size for b in batches])[:-1]
    for batch, mask in zip(batches, np.split(bought, split), strict=True):
        batch["bought"] = mask
    if not bought.any():
        return
    # Written in channel order, whichever order the schedule offered them in, so the
    # order book (and what reads it in row order) does not depend on the schedule.
    rows_in = np.flatnonzero(bought)
    rows_in = rows_in[np.argsort(c["channel"][rows_in], kind="stable")]
    b = {key: value[rows_in] for key, value in c.items()}
    who, p, con = b["consumer"], model.params, model.consumers
    d.fill(who, b["category"])
    d.spend(who, b["paid"])
    model.month_bought[b["channel"], who] = True
    product = b["product"]
    rows = model.orders.append(
        day=model.day,
        consumer=who,
        product=product,
        brand=model.catalogue.brand[product],
        channel=b["channel"],
        source=b["source"],
        owner=b["owner"],
        list_price=model.catalogue.list_price[product],
        paid=b["paid"],
        fit=b["fit"],
        expected=funnel.expected_fit(p.purchase, b["fit"], b["hype"]),
        impulse=b["hype"] * con.impulsiveness[who],
        delivery_day=model.day + b["lag"],
        status=PENDING,
        u_defect=b["u_defect"],
        z_fit=b["z_fit"],
        u_resolve=b["u_resolve"],
        u_return=b["u_return"],
    )
    model.pending = np.concatenate([model.pending, rows])
    book_orders(model, rows, sign=+1.0)
    # A non-follower who bought a streamer product a friend forwarded may follow her.
    fans = who[(b["channel"] == Channel.STREAMER) & ~con.follows[who]]
    follow = model.streams["follow"].random(fans.size) < p.streamer.follow_on_purchase
    model.streamer.gain_followers(con.follows, fans[follow], model.recorder)


def expose(
    model: CommerceModel,
    consumer: np.ndarray,
    product: np.ndarray,
    channel: np.ndarray | int,
    source: int,
    owner: np.ndarray | None = None,
) -> np.ndarray:
    """Offer and settle at once (word of mouth, generation by generation): settles what is
    pending, offers these exposures (:func:`offer`, same parameters) and settles them.

    Returns
    -------
    A boolean mask over the exposures: which became orders.
    """
    settle(model)
    batch = offer(model, consumer, product, channel, source, owner)
    bought = np.zeros(consumer.size, dtype=bool)
    if batch is not None:
        settle(model)
        bought[batch["position"][batch["bought"]]] = True
    return bought
