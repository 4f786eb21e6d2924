"""The mega-streamer ("whale"): followers, sessions and vetting (ODD 2 and 7.1-7.2).

:class:`MegaStreamer` is her state and decisions; :func:`sell_through_streamer` is her session
in the daily schedule (lineup, slot fees, viewers, exposures, discovery).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from sim.world import kernels, money
from sim.world.brands import Catalogue
from sim.world.calendar import occurs_on
from sim.world.channels import Channel, Source
from sim.world.consumers import base_logit
from sim.world.money import BrandAccounts
from sim.world.params import StreamerParams
from sim.world.purchases import offer

if TYPE_CHECKING:
    from sim.world.metrics import TickRecorder
    from sim.world.model import CommerceModel


class MegaStreamer(mesa.Agent):
    """One head streamer. Her followers are a boolean mask over consumers (``follows``).

    Vetting (ODD 7.1): her team can check ``vetting_capacity`` products properly a week, shared
    equally over the week's sessions. A session's candidates come from the products of brands
    that hold a contract with her, in random order; the team checks the first ones its capacity
    allows and drops those below ``vetting_threshold`` quality; the rest go on air unchecked, at
    their brand's unscreened quality. With more products a session, a smaller share of what goes
    on air was checked, and its average quality is lower. A product goes on air at most once a
    session: when fewer products pass than there are slots, the session is shorter.
    """

    def __init__(self, model: mesa.Model, p: StreamerParams):
        super().__init__(model)
        self.p = p
        self.active = True
        self.lineup = np.zeros(0, dtype=np.int64)
        self.vetted = np.zeros(0, dtype=bool)

    def session_today(self, day: int) -> bool:
        return self.active and occurs_on(day, self.p.sessions_per_week)

    def checks_per_session(self, rng: np.random.Generator) -> int:
        """How many products the team checks for one session: the week's capacity over the
        week's sessions (a fractional part is a chance of one more)."""
        per_session = self.p.vetting_capacity / max(self.p.sessions_per_week, 1e-9)
        whole = int(per_session)
        return whole + int(rng.random() < per_session - whole)

    def build_lineup(
        self, catalogue: Catalogue, contracted: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Products on air in today's session, from brands with a contract (vetted as above).

        Sets ``lineup`` and ``vetted`` (per slot: was its product checked?)."""
        pool = np.flatnonzero(contracted)
        checks = self.checks_per_session(rng)
        candidates = rng.permutation(pool)
        checked = np.arange(candidates.size) < checks
        good = catalogue.base_quality[candidates] >= self.p.vetting_threshold
        on_air = ~checked | good
        n = self.p.products_per_session
        self.lineup = candidates[on_air][:n]
        self.vetted = checked[on_air][:n]
        return self.lineup

    def sign_brands(
        self,
        accounts: BrandAccounts,
        products_of_brand: np.ndarray,
        eligible: np.ndarray,
        rng: np.random.Generator,
    ) -> int:
        """After the brands' reviews, her team signs new brands (in random order, among the
        eligible ones that have never held her contract) until her pool fills a session again.
        Returns how many brands she signed (none once she is banned)."""
        col = accounts.contracts[:, Channel.STREAMER]
        need = self.p.products_per_session - int(products_of_brand[col].sum())
        if not self.active or need <= 0:
            return 0
        free = eligible & ~col & (accounts.left_day[:, Channel.STREAMER] < 0)
        candidates = rng.permutation(np.flatnonzero(free))
        enough = np.searchsorted(np.cumsum(products_of_brand[candidates]), need) + 1
        signed = candidates[:enough]
        accounts.contracts[signed, Channel.STREAMER] = True
        return int(signed.size)

    def products_watched(self, viewers: np.ndarray, rng: np.random.Generator):
        """Each viewer watches a contiguous stretch of ``products_seen`` products of the lineup
        (she tunes in at a random point). Returns (viewer per exposure, product per exposure)."""
        n = self.lineup.size
        k = min(self.p.products_seen, n)
        if n == 0 or viewers.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        start = rng.integers(0, n, viewers.size)
        pos = (start[:, None] + np.arange(k)[None, :]) % n
        return np.repeat(viewers, k), self.lineup[pos.ravel()]

    def gain_followers(self, follows: np.ndarray, who: np.ndarray, recorder: TickRecorder) -> None:
        """Consumers ``who`` start following her (not once she is banned): sets ``follows``
        (the consumers' mask) and records the new followers."""
        if self.active and who.size:
            new = who[~follows[who]]
            follows[new] = True
            recorder.add("new_followers", Channel.STREAMER, np.unique(new).size)


def sell_through_streamer(model: CommerceModel) -> None:
    """Today's live session, if she is active and it is a session day (ODD 7.1, 7.2).

    Builds the lineup from the contracted products (``model.streamer_products``) and vets it;
    charges each slot's brand the slot fee (:func:`sim.world.money.slot_fee`); followers watch
    with a chance moved by their trust in her (engagement), each viewer sees a stretch of the
    lineup (:func:`sim.world.purchases.offer`); then the platform's push wins new followers
    (discovery). Every draw is from the stream ``streamer``. Changes the recorder, the brands'
    accounts, today's candidates and ``consumers.follows``.
    """
    s = model.streamer
    if not s.session_today(model.day):
        return
    lineup = s.build_lineup(model.catalogue, model.streamer_products, model.streams["streamer"])
    if lineup.size == 0:  # no brand left to put on air: no session
        return
    rec = model.recorder
    rec.add("slots", Channel.STREAMER, lineup.size)
    rec.add("vetted_slots", Channel.STREAMER, s.vetted.sum())
    fee = money.slot_fee(model.params.streamer, int(model.consumers.follows.sum()), lineup.size)
    money.charge(
        rec, model.accounts, "slot_fee", Channel.STREAMER, model.catalogue.brand[lineup], fee
    )
    rec.add("seller_earnings", Channel.STREAMER, fee * lineup.size)
    con, rng = model.consumers, model.streams["streamer"]
    fans = np.flatnonzero(con.follows)
    # Followers watch with Consumers.engagement's chance (one compiled pass).
    viewers = kernels.engaged(
        fans,
        con.trust[Source.STREAMER],
        con.initial_trust[Source.STREAMER],
        np.float32(con.engagement_trust),
        float(base_logit(model.params.streamer.attention_rate)),
        rng.random(fans.size),
    )
    rec.add("visits", Channel.STREAMER, viewers.size)
    consumer, product = s.products_watched(viewers, rng)
    offer(model, consumer, product, Channel.STREAMER, Source.STREAMER)
    # The platform pushes the live room beyond her audience: some who see it follow.
    new = rng.integers(0, model.n, rng.poisson(model.params.streamer.discovery * viewers.size))
    s.gain_followers(con.follows, new, rec)
