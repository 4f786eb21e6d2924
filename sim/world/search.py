"""Conventional e-commerce: search and ads (ODD 7.2).

Every brand lists its products in search (until it leaves the channel at a review, 7.10). A
consumer with an open need searches for it with a daily chance; a banned streamer's displaced
followers also search (7.9). Each search shows ``conventional.search_results`` products of the
category, and every product shown is an ad exposure its brand pays for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.world import kernels
from sim.world.channels import Channel, Source
from sim.world.money import charge
from sim.world.purchases import offer
from sim.world.ragged import run_starts

if TYPE_CHECKING:
    from sim.world.model import CommerceModel


def sell_through_search(model: CommerceModel) -> None:
    """Consumers with an open need search for it (with chance ``conventional.search_rate``),
    and so do today's extra searchers (``model.extra_searchers``, a banned streamer's former
    followers; one with no open need browses a category of her tastes); each search shows
    ``search_results`` products of the category (``model.search_index``).

    Every draw is from the stream ``search``. Changes the recorder (visits, ads), the brands'
    accounts (ads) and today's candidates (:func:`sim.world.purchases.offer`).
    """
    c, d, rng = model.params.conventional, model.demand, model.streams["search"]
    k = c.search_results
    searchers = kernels.below_with_need(rng.random(model.n), c.search_rate, d.latest, model.day)
    if model.extra_searchers.size:
        searchers = np.union1d(searchers, model.extra_searchers)
    category = d.open_category(searchers, model.day, rng)
    none = category < 0  # a displaced follower with no open need browses her tastes
    category[none] = d.draw_category(searchers[none], rng)
    consumer = np.repeat(searchers, k)
    category = np.repeat(category, k)
    product = model.catalogue.pick_in_category(model.search_index, category, rng)
    ok = product >= 0
    consumer, product = consumer[ok], product[ok]
    # A search that found nothing stocked (every brand of the category left) is no visit.
    # consumer is sorted (searchers are; repeat and masks keep order): count its runs.
    model.recorder.add("visits", Channel.CONVENTIONAL, int(run_starts(consumer).sum()))
    brand = model.catalogue.brand[product]
    charge(model.recorder, model.accounts, "ads", Channel.CONVENTIONAL, brand, c.ad_cost)
    offer(model, consumer, product, Channel.CONVENTIONAL, Source.SEARCH)
