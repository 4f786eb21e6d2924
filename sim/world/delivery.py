"""Delivery, return and feedback (ODD 7.4-7.6): every delivery passes through :func:`deliver`.

An order is delivered on its ``delivery_day``. Its outcome comes from the pure functions of
:mod:`sim.world.funnel` applied to the order's own random numbers (drawn when it was placed):
defect and realised fit (an owner's advice narrows the fit surprise), the expectation gap, the
chance after-sales service resolves a problem (:class:`sim.world.service.ServiceDesks`), the
return decision and the buyer's satisfaction. Satisfaction moves her trust in the order's
source; a kept order becomes what she recommends; the advising owner learns from what was kept
and returned. A resolved problem costs its brand an exchange; a return reverses the sale,
costs reverse logistics (and a write-off when defective), reopens her need and refunds this
month's budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.world import funnel
from sim.world.channels import CHANNELS, Channel, Source
from sim.world.demand import MONTH
from sim.world.money import book_orders, charge
from sim.world.orders import KEPT, RETURNED

if TYPE_CHECKING:
    from sim.world.model import CommerceModel


def deliver(model: CommerceModel) -> None:
    """Deliver today's orders: draw defects and fit, decide returns, update trust and
    learning, and book returns.

    Delivers the rows of ``model.pending`` due today (``delivery_day <= day``) and drops them
    from it. Changes: the orders' ``status``, ``defect``, ``misfit``, ``resolved`` and
    ``satisfaction``; the service desks' loads; the buyers' trust, satisfaction and
    ``last_kept_order``; the advising owners' knowledge; the recorder (deliveries, defects,
    problems, resolved, satisfaction, returns and costs) and the brands' accounts; for a
    return, the reversed sale (:func:`sim.world.money.book_orders`), the buyer's reopened need
    and, if bought this month, her refunded budget. Draws no random number.
    """
    p, o, cat, con, rec = (
        model.params,
        model.orders,
        model.catalogue,
        model.consumers,
        model.recorder,
    )
    due_mask = o["delivery_day"][model.pending] <= model.day
    rows = model.pending[due_mask]
    model.pending = model.pending[~due_mask]
    if rows.size == 0:
        return
    product, channel = o["product"][rows], o["channel"][rows].astype(np.int64)
    owner, consumer = o["owner"][rows], o["consumer"][rows]
    category = cat.category[product]
    via_owner = channel == Channel.OWNERS
    # An owner who has quit no longer advises or serves: her orders still in transit get
    # the platform's service only.
    owner_skill = np.zeros(rows.size)
    if via_owner.any():
        mine = owner[via_owner]
        owner_skill[via_owner] = np.where(model.owners.active[mine], model.owners.skill[mine], 0.0)
    noise_scale = np.where(cat.apparel_category[category], p.delivery.apparel_fit_noise, 1.0)
    advised = via_owner & (o["source"][rows] == Source.OWNER)
    noise_scale = noise_scale * np.where(advised, 1.0 - p.owners.advice * owner_skill, 1.0)
    defect, realised = funnel.realise_delivery(
        p.delivery,
        cat.quality[product],
        o["fit"][rows],
        noise_scale,
        o["u_defect"][rows],
        o["z_fit"][rows],
    )
    misfit = realised < p.returns.misfit_threshold
    gap = funnel.expectation_gap(o["expected"][rows], realised, defect)
    problem = defect | misfit
    resolution = model.desks.resolution(
        problem, via_owner, owner, owner_skill, model.owners.m, o["brand"][rows]
    )
    resolved = problem & (o["u_resolve"][rows] < resolution)
    propensity = funnel.return_propensity(p.returns, defect, misfit, gap, o["impulse"][rows])
    returned = ~resolved & (o["u_return"][rows] < propensity)
    sat = funnel.satisfaction(returned, resolved, problem, gap, p.feedback.resolved_satisfaction)

    o["status"][rows] = np.where(returned, RETURNED, KEPT)
    o["defect"][rows], o["misfit"][rows], o["resolved"][rows] = defect, misfit, resolved
    o["satisfaction"][rows] = sat
    con.update_after_delivery(
        consumer,
        o["source"][rows].astype(np.int64),
        sat,
        p.feedback.trust_gain,
        p.feedback.trust_loss,
    )
    kept_rows = rows[~returned]
    con.last_kept_order[o["consumer"][kept_rows]] = kept_rows
    model.owners.learn(owner[advised], category[advised], ~returned[advised])

    rec.add("delivered", channel)
    rec.add("defects", channel[defect])
    rec.add("problems", channel[problem])
    rec.add("resolved", channel[resolved])
    if resolved.any():
        brand = o["brand"][rows][resolved]
        cost = p.brands.exchange_cost + np.where(defect[resolved], cat.cost[product[resolved]], 0.0)
        charge(rec, model.accounts, "exchanges", channel[resolved], brand, cost)
    sat_sum = np.bincount(channel, weights=sat, minlength=len(CHANNELS))
    sat_n = np.bincount(channel, minlength=len(CHANNELS))
    with np.errstate(invalid="ignore", divide="ignore"):
        rec.set(
            "satisfaction",
            np.r_[np.where(sat_n > 0, sat_sum / sat_n, np.nan), sat.mean()],
        )
    r = rows[returned]
    if r.size:
        rch = channel[returned]
        paid = o["paid"][r]
        rec.add("returns", rch)
        rec.add("returned_value", rch, paid)
        brand = o["brand"][r]
        charge(rec, model.accounts, "reverse_logistics", rch, brand, p.brands.reverse_logistics)
        write_off = np.where(defect[returned], cat.cost[o["product"][r]], 0.0)
        charge(rec, model.accounts, "write_off", rch, brand, write_off)
        book_orders(model, r, sign=-1.0)
        # The need is open again (for any channel), and the money goes back to her budget
        # if it was spent in the current month's budget.
        buyer = consumer[returned]
        model.demand.reopen(buyer, category[returned], model.day)
        this_month = o["day"][r] // MONTH == model.day // MONTH
        model.demand.refund(buyer[this_month], paid[this_month])
