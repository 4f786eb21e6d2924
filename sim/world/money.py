"""Money: what a sale, a return, an exchange, a slot and an ad cost a brand, and the brands'
contract reviews (ODD 7.10).

Every channel's sale is booked the same way; only the terms differ, and each term is a declared
lever or a sourced figure (docs/ODD.md, parameter table):

* the price paid is the list price less the channel's **discount**;
* the seller (an owner, the streamer) gets a **commission** on the price paid;
* the selling platform keeps its **take** of the price paid, the same share in every channel;
* the brand keeps ``paid - cost of goods - commission - take``;
* a **return** refunds the sale, costs reverse logistics, and writes off a defective item;
* a problem **resolved** by after-sales costs an exchange (shipping and handling, and the cost
  of goods of a replacement when the item was defective);
* the streamer's **slot fee** is fixed per slot, scaled with the viewers the slot is expected to
  reach; search **ads** cost per exposure.

Each brand keeps the profit it has made in each channel since the contract began
(:class:`BrandAccounts`). Every ``brands.review_days`` days it reviews each contract and leaves a
channel that has lost it more than it accepts as the price of being seen there
(``brands.loss_tolerance`` of its net sales in the channel: the brief's "brands often lose money
on a head session, but not more than they sell"), so a channel whose terms a brand cannot live
with loses it. Judging on the whole contract rather than on the last month keeps one unlucky
month (a few returns of a brand with few sales) from ending a contract that pays on average.
After the reviews the streamer signs brands that never held her contract until her pool fills
a session again (:meth:`sim.world.streamer.MegaStreamer.sign_brands`).

Functions: :func:`book_orders` books sales and their reversal on return, :func:`charge` books a
brand cost of one kind, :func:`first_contracts` are the contracts a run starts with,
:func:`review_contracts` runs the reviews (every ``brands.review_days`` days), and
:func:`assortments` says what each channel may sell under the contracts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sim.world.channels import CHANNELS, Channel, Source
from sim.world.params import Params, StreamerParams

if TYPE_CHECKING:
    from sim.world.brands import Catalogue
    from sim.world.metrics import TickRecorder
    from sim.world.model import CommerceModel

# Products grouped by category: (products, start, count), as Catalogue.by_category gives them.
ProductIndex = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Terms:
    """The terms of sale per channel (arrays indexed by :class:`Channel`)."""

    discount: np.ndarray
    commission: np.ndarray
    take: float

    @classmethod
    def from_params(cls, p: Params) -> Terms:
        return cls(
            discount=np.array([p.owners.discount, p.streamer.discount, p.conventional.discount]),
            commission=np.array([p.owners.commission, p.streamer.commission, 0.0]),
            take=p.platform.take,
        )

    def paid(self, list_price: np.ndarray, channel: np.ndarray | int) -> np.ndarray:
        """The price a buyer pays."""
        return list_price * (1.0 - self.discount[channel])

    def sale(
        self, paid: np.ndarray, cost: np.ndarray, channel: np.ndarray
    ) -> dict[str, np.ndarray]:
        """What one sale means for its brand: commission, platform take and profit.

        >>> t = Terms(np.zeros(3), np.array([0.1, 0.2, 0.0]), 0.05)
        >>> float(t.sale(np.array([100.0]), np.array([40.0]), np.array([1]))["profit"][0])
        35.0
        """
        commission = self.commission[channel] * paid
        take = self.take * paid
        return {"commission": commission, "take": take, "profit": paid - cost - commission - take}


def slot_fee(p: StreamerParams, followers: int, slots: int) -> float:
    """The fee for one product slot of a session of ``slots`` products: ``slot_fee`` RMB per
    1,000 viewers the slot is expected to reach, ``followers x attention_rate x
    min(products_seen, slots) / slots``.

    The brief puts fees near 10-30% of a slot's sales; at ~0.22 RMB sold per product exposure
    (T4: ~2 RMB a view, ~9 products a view) that is ~45 RMB per 1,000 slot viewers. A
    scaled-down world pays scaled-down fees.

    >>> slot_fee(StreamerParams(slot_fee=45.0, attention_rate=0.2, products_seen=9), 1_000_000, 60)
    1350.0
    """
    seen = min(p.products_seen, slots) / max(slots, 1)
    return p.slot_fee * followers * p.attention_rate * seen / 1000.0


class BrandAccounts:
    """Each brand's contracts and its profit per channel since each contract began.

    ``contracts`` is a (brands x channels) boolean array: may the brand's products be sold in
    the channel (owners: admitted by the platform's selection and not withdrawn; streamer:
    contracted; conventional: listed with ads).
    """

    def __init__(self, contracts: np.ndarray, loss_tolerance: float = 0.0) -> None:
        self.contracts = contracts.copy()
        self.loss_tolerance = loss_tolerance
        self.profit = np.zeros(contracts.shape)
        self.sales = np.zeros(contracts.shape)  # net of returns
        self.left_day = np.full(contracts.shape, -1, dtype=np.int32)

    def book(
        self,
        brand: np.ndarray,
        channel: np.ndarray | int,
        amount: np.ndarray | float,
        sales: np.ndarray | None = None,
    ) -> None:
        """Add amounts (profit: positive; costs: negative), and sales (price paid; negative
        for a refund), to brands' channel accounts."""
        brand = np.asarray(brand, dtype=np.int64)
        flat = brand * len(CHANNELS) + np.broadcast_to(np.asarray(channel, np.int64), brand.shape)

        def total(x) -> np.ndarray:
            w = np.broadcast_to(np.asarray(x, dtype=np.float64), brand.shape)
            return np.bincount(flat, weights=w, minlength=self.profit.size).reshape(
                self.profit.shape
            )

        self.profit += total(amount)
        if sales is not None:
            self.sales += total(sales)

    def review(self, day: int) -> np.ndarray:
        """Every brand reviews every contract it holds: it leaves a channel whose profit since
        the contract began is below ``-loss_tolerance x`` its net sales there. Returns the
        (brands x channels) mask of contracts ended on this review.

        >>> a = BrandAccounts(np.ones((2, 3), bool))
        >>> a.book(np.array([0, 1]), 1, np.array([-5.0, 5.0]))
        >>> a.review(30)[:, 1].tolist()
        [True, False]
        """
        leave = self.contracts & (self.profit < -self.loss_tolerance * self.sales)
        self.contracts &= ~leave
        self.left_day[leave] = day
        return leave

    def in_channel(self) -> np.ndarray:
        """Brands holding a contract, per channel, then in at least one channel."""
        return np.r_[self.contracts.sum(axis=0), self.contracts.any(axis=1).sum()]

    def products_allowed(self, product_brand: np.ndarray, channel: Channel) -> np.ndarray:
        """Per product: may it be sold in the channel (its brand holds the contract)?"""
        return self.contracts[product_brand, int(channel)]


def first_contracts(admitted: np.ndarray, streamer_candidates: np.ndarray, p: Params) -> np.ndarray:
    """The contracts a run starts with, (brands x channels): owners may sell the brands the
    platform ``admitted``; the streamer holds the first ``streamer.brand_share`` of the brands
    of ``streamer_candidates`` (the eligible brands in random order); every brand lists in
    search."""
    contracted = streamer_candidates[: int(round(p.streamer.brand_share * p.world.brands))]
    contracts = np.ones((p.world.brands, len(CHANNELS)), dtype=bool)
    contracts[:, Channel.OWNERS] = admitted
    contracts[:, Channel.STREAMER] = np.isin(np.arange(p.world.brands), contracted)
    return contracts


def assortments(
    accounts: BrandAccounts, catalogue: Catalogue
) -> tuple[ProductIndex, ProductIndex, np.ndarray]:
    """What each channel may sell, from the brands' contracts: the owners' and search's
    products indexed by category (:meth:`sim.world.brands.Catalogue.by_category`), and the
    streamer's per-product mask."""
    allowed = {ch: accounts.products_allowed(catalogue.brand, ch) for ch in Channel}
    return (
        catalogue.by_category(allowed[Channel.OWNERS]),
        catalogue.by_category(allowed[Channel.CONVENTIONAL]),
        allowed[Channel.STREAMER],
    )


def review_contracts(model: CommerceModel) -> None:
    """Every ``brands.review_days`` days each brand leaves the channels that have lost it more
    than it accepts since the contract began (:meth:`BrandAccounts.review`); the streamer then
    signs new brands to fill her sessions (stream ``contracts``).

    Changes ``model.accounts`` and, when a contract ended or began, the channels' assortments
    (``model.owner_index``, ``model.search_index``, ``model.streamer_products``).
    """
    if model.day > 0 and model.day % model.params.brands.review_days == 0:
        left = model.accounts.review(model.day).any()
        signed = model.streamer.sign_brands(
            model.accounts,
            np.bincount(model.catalogue.brand, minlength=model.params.world.brands),
            model.streamer_eligible,
            model.streams["contracts"],
        )
        if left or signed:
            model.owner_index, model.search_index, model.streamer_products = assortments(
                model.accounts, model.catalogue
            )


def book_orders(model: CommerceModel, rows: np.ndarray, sign: float) -> None:
    """Order-time accounts of order-book ``rows`` (``sign`` +1), or their reversal when the
    orders are returned (-1).

    Changes: the recorder's orders, GMV (word of mouth's share too; only when booking),
    discount, commission, platform take, seller earnings and brand profit; each brand's
    account in the channel (``model.accounts``); for sales through an owner's link, her
    earnings today and her sales (``model.owners``).
    """
    o, cat, rec = model.orders, model.catalogue, model.recorder
    ch = o["channel"][rows].astype(np.int64)
    paid = o["paid"][rows]
    sale = model.terms.sale(paid, cat.cost[o["product"][rows]], ch)
    commission = sale["commission"]
    if sign > 0:
        rec.add("orders", ch)
        wom = o["source"][rows] == Source.FRIEND
        rec.add("wom_orders", ch[wom])
        rec.add("gmv", ch, paid)
        rec.add("wom_gmv", ch[wom], paid[wom])
    rec.add("discount", ch, sign * (o["list_price"][rows] - paid))
    rec.add("commission", ch, sign * commission)
    rec.add("platform_take", ch, sign * sale["take"])
    rec.add("seller_earnings", ch, sign * commission)
    rec.add("brand_profit", ch, sign * sale["profit"])
    model.accounts.book(o["brand"][rows], ch, sign * sale["profit"], sales=sign * paid)
    via_owner = ch == Channel.OWNERS
    if via_owner.any() and model.owners.m:
        owner = o["owner"][rows][via_owner]
        m = model.owners.m
        model.owners.earned_today += np.bincount(
            owner, weights=sign * commission[via_owner], minlength=m
        )
        model.owners.sales += np.bincount(owner, weights=sign * paid[via_owner], minlength=m)


def charge(
    recorder: TickRecorder,
    accounts: BrandAccounts,
    kind: str,
    channel: np.ndarray | int,
    brand: np.ndarray,
    amount: np.ndarray | float,
) -> None:
    """A brand cost of one ``kind`` (slot fee, ads, reverse logistics, write-off, exchanges):
    recorded by channel in ``recorder`` (as the cost and as lost brand profit) and booked to
    each brand's account in the channel."""
    amount = np.broadcast_to(np.asarray(amount, dtype=np.float64), brand.shape)
    recorder.add(kind, channel, amount)
    recorder.add("brand_profit", channel, -amount)
    accounts.book(brand, channel, -amount)
