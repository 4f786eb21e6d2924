"""After-sales service (ODD 7.5): who handles a delivered order's problem, and how much load
each desk can take.

The article's claim made a mechanism: an owner answers her members' problems herself (she
knows the buyer: advice, an exchange), backed by the platform's service desk; a streamer's
after-sales goes to the merchant, the brand's own desk, which search orders use too. Every
desk has a daily capacity; a desk with capacity ``c`` and load ``L`` handles each queued problem
with chance ``min(1, c / L)`` (:func:`served_share`), and what it does not handle is returned
rather than waited on. A desk works through a few days' problems together, so its load is a
moving average of its daily problems (:class:`ServiceDesks`, memory ``after_sales.queue_days``):
a session's burst still raises it, while a desk of a small world is not judged on one day's
handful of problems (which would make the rates depend on the world's size).
"""

from __future__ import annotations

import numpy as np

from sim.world.params import AfterSalesParams


def served_share(
    server: np.ndarray, load: np.ndarray, capacity: np.ndarray | float, servers: int
) -> np.ndarray:
    """Per problem, the chance its server gets to it: ``min(1, capacity / load)``.

    ``load`` is each server's load (length ``servers``). A burst beyond capacity lowers every
    queued problem's chance alike.

    >>> served_share(np.array([0, 0, 1]), np.array([4.0, 1.0]), 2.0, servers=2).tolist()
    [0.5, 0.5, 1.0]
    """
    share = np.minimum(1.0, np.asarray(capacity) / np.maximum(load, 1e-12))
    return share[server]


class ServiceDesks:
    """The platform's desk and the brands' desks, with their loads smoothed over
    ``queue_days`` (an exponentially weighted mean of daily problems, today's included)."""

    def __init__(self, p: AfterSalesParams, brands: int, scale: float) -> None:
        self.p = p
        self.brands = brands
        self.platform_capacity = p.platform_capacity * scale
        self.brand_capacity = p.brand_capacity * scale / brands  # the total, shared equally
        self.platform_load = np.zeros(1)
        self.brand_load = np.zeros(brands)

    def _smooth(self, load: np.ndarray, today: np.ndarray) -> np.ndarray:
        return load + (today - load) / max(self.p.queue_days, 1.0)

    def resolution(
        self,
        problem: np.ndarray,
        via_owner: np.ndarray,
        owner: np.ndarray,
        owner_skill: np.ndarray,
        owners: int,
        brand: np.ndarray,
    ) -> np.ndarray:
        """Per delivered order of today, the chance after-sales resolves its problem (0 where
        there is none); updates the desks' loads with today's problems.

        * An owners-channel problem goes first to its owner, who handles up to
          ``owner_capacity`` problems a day (today's) and resolves one with
          ``owner_resolution x skill`` (skill 0 for an owner who has quit); what she leaves
          goes to the platform's desk (``platform_capacity x scale`` a day).
        * A streamer or conventional problem goes to its brand's desk (``brand_capacity x
          scale / brands`` a day), shared by both channels.

        A desk resolves a problem it handles with ``resolution``. Returns
        ``1 - (1 - p_owner)(1 - p_platform)`` for owners-channel problems, ``p_brand`` for
        the others.
        """
        p = self.p
        chance = np.zeros(problem.size)
        own = problem & via_owner
        o = owner[own]
        first = served_share(
            o, np.bincount(o, minlength=owners).astype(float), p.owner_capacity, owners
        )
        p_owner = first * p.owner_resolution * owner_skill[own]
        # The platform's desk is one server; its load is what owners left unresolved.
        self.platform_load = self._smooth(self.platform_load, np.array([np.sum(1.0 - p_owner)]))
        desk = np.zeros(o.size, dtype=np.int64)
        second = served_share(desk, self.platform_load, self.platform_capacity, 1)
        chance[own] = 1.0 - (1.0 - p_owner) * (1.0 - second * p.resolution)
        other = problem & ~via_owner
        b = brand[other]
        self.brand_load = self._smooth(
            self.brand_load, np.bincount(b, minlength=self.brands).astype(float)
        )
        served = served_share(b, self.brand_load, self.brand_capacity, self.brands)
        chance[other] = served * p.resolution
        return chance
