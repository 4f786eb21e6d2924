"""Shared demand: what consumers need and can afford, whichever channel sells it (ODD 7.3).

Every channel sells into the same demand, so the channels compete for it:

* **Needs** arrive over time, one category at a time: each day a consumer gets a new need with
  chance ``consumers.need_rate``, in a category drawn from her preferences. A need stays open
  for a geometric number of days (mean ``consumers.need_lifetime``) unless a purchase in its
  category fills it first, through *any* channel. An open need raises the chance that she buys
  a product of that category (``purchase.need``); a filled need no longer does. A need a
  channel did not fill (the streamer was banned, an owner quit) stays open for the others:
  substitution needs no rule of its own.
* **Budget**: each consumer has a monthly budget (lognormal, mean ``consumers.budget``), spent
  across channels and refilled every 30 days. A purchase she cannot afford ends her shopping
  for the day.

State is two arrays: ``need_until`` (consumer x category, the last day the need is open, -1 for
none) and ``spent`` (this month's spending); ``latest`` keeps each consumer's last open day over
her categories (the row maximum of ``need_until``, updated with it), so "who has a need today"
reads one number per consumer, not a row. A day's purchases are resolved together by
:func:`sim.world.funnel.resolve_purchases`, in a random order that no channel controls.

Example
-------
>>> import numpy as np
>>> from sim.world.params import ConsumerParams
>>> rng = np.random.default_rng(0)
>>> d = Demand(ConsumerParams(need_rate=1.0), np.full((3, 2), 0.5, np.float32), rng)
>>> _ = d.arrive(0, rng)
>>> int(d.has_need(0).sum())
3
>>> d.fill(np.array([0]), np.array([int(np.flatnonzero(d.need_until[0] >= 0)[0])]))
>>> int(d.has_need(0).sum())
2
"""

from __future__ import annotations

import numpy as np

from sim.world import kernels
from sim.world.distributions import beta_with_mean
from sim.world.params import ConsumerParams

MONTH = 30  # days between budget refills (and of a month in monthly metrics)


class Demand:
    """Open needs and monthly budgets of ``n`` consumers over ``C`` categories."""

    def __init__(self, p: ConsumerParams, preference: np.ndarray, rng: np.random.Generator):
        n, c = preference.shape
        self.p = p
        self.n, self.categories = n, c
        rate, budget = rng.spawn(2)  # one stream per attribute
        self.need_rate = np.asarray(
            beta_with_mean(rate, p.need_rate, p.need_concentration, n), dtype=np.float32
        )
        spread = budget.lognormal(-(p.budget_sigma**2) / 2, p.budget_sigma, n)  # mean 1
        self.budget = np.asarray(p.budget * spread, dtype=np.float32)
        self.spent = np.zeros(n, dtype=np.float32)
        self.need_until = np.full((n, c), -1, dtype=np.int32)
        self.latest = np.full(n, -1, dtype=np.int32)  # need_until's row maxima
        self._pref_cdf = np.cumsum(preference, axis=1, dtype=np.float32)
        self._pref_cdf[:, -1] = 1.0

    # -- needs -------------------------------------------------------------------------------
    def arrive(self, day: int, rng: np.random.Generator) -> np.ndarray:
        """Today's new needs: who got one (returned) and in which category, open until a
        geometric number of days from today. A need in a category already open extends it."""
        who = kernels.below(rng.random((self.n,)), self.need_rate)
        category = self.draw_category(who, rng)
        life = rng.geometric(1.0 / max(self.p.need_lifetime, 1.0), who.size)
        until = np.minimum(day + life - 1, np.iinfo(np.int32).max).astype(np.int32)
        kernels.open_needs(self.need_until, self.latest, who, category, until)
        return who

    def draw_category(self, who: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A category for each consumer in ``who``, drawn from her preferences."""
        u = rng.random(who.size, dtype=np.float32)
        return kernels.draw_from_cdf(self._pref_cdf, who, u)

    def is_open(self, consumer: np.ndarray, category: np.ndarray, day: int) -> np.ndarray:
        """Does each consumer have an open need in the category today?"""
        return self.need_until[consumer, category] >= day

    def has_need(self, day: int) -> np.ndarray:
        """Per consumer: any open need today?"""
        return self.latest >= day

    def open_category(self, who: np.ndarray, day: int, rng: np.random.Generator) -> np.ndarray:
        """One of each consumer's open needs, at random (-1 for a consumer with none)."""
        score = rng.random((who.size, self.categories), dtype=np.float32)
        return kernels.pick_open_need(self.need_until, who, day, score)

    def fill(self, consumer: np.ndarray, category: np.ndarray) -> None:
        """Purchases fill the needs of their category."""
        self.need_until[consumer, category] = -1
        self.latest[consumer] = self.need_until[consumer].max(axis=1)

    def reopen(self, consumer: np.ndarray, category: np.ndarray, day: int) -> None:
        """A returned item leaves its need unmet: open again for ``need_lifetime`` days."""
        until = day + max(int(round(self.p.need_lifetime)), 1) - 1
        self.need_until[consumer, category] = np.maximum(self.need_until[consumer, category], until)
        self.latest[consumer] = np.maximum(self.latest[consumer], until)

    # -- budget ------------------------------------------------------------------------------
    def left(self, consumer: np.ndarray) -> np.ndarray:
        """What each consumer can still spend this month."""
        return self.budget[consumer] - self.spent[consumer]

    def spend(self, consumer: np.ndarray, amount: np.ndarray) -> None:
        np.add.at(self.spent, consumer, amount.astype(np.float32))

    def refund(self, consumer: np.ndarray, amount: np.ndarray) -> None:
        """A return gives back money spent from this month's budget (the caller passes only
        returns of orders placed this month; float rounding is clipped at 0)."""
        np.subtract.at(self.spent, consumer, amount.astype(np.float32))
        np.maximum(self.spent, 0.0, out=self.spent)

    def new_month(self) -> None:
        self.spent[:] = 0.0
