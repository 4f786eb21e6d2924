"""Model parameters: one validated, immutable configuration object.

Every parameter is declared once, here, with its default, allowed range, unit and the source of
its default (a row of the brief's table, or "assumption"). Validation, the TOML loader and the
parameter table of docs/ODD.md are all generated from these declarations, so they cannot drift
apart.

A configuration is a :class:`Params` made of sections (``world``, ``graph``, ``owners`` ...).
Build one with keyword overrides or from a nested mapping (a TOML file)::

    >>> p = Params.from_dict({"world": {"consumers": 2000, "days": 10}})
    >>> p.world.consumers
    2000
    >>> p.with_overrides({"hype.live": 1.5}).hype.live
    1.5

Money is in RMB at model scale: totals (GMV, profit) belong to the simulated world, rates compare
across scales; slot fees are set per 1,000 expected viewers and service capacities per 100,000
consumers, so they scale with the world. See
docs/ODD.md, section 2.3.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

GROUP_SIZE_CAP = 500  # WeChat's hard limit on a group's members (brief, "WeChat group size cap")


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type or outside its allowed range.

    The message names the file (when there is one), the dotted key, the offending value and what
    is allowed, on one line.
    """


def param(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    unit: str = "",
    source: str = "assumption",
    doc: str = "",
    choices: tuple[str, ...] | None = None,
    nullable: bool = False,
    kind: str | None = None,
) -> Any:
    """Declare one parameter: a dataclass field whose metadata drives validation and docs.

    ``kind`` places it in the exploratory-modelling vocabulary of scenario files: ``lever``
    (what a strategist controls), ``uncertainty`` (what nobody controls), ``world`` (size and
    structure), ``event``; by default the kind of its section (:data:`SECTION_KINDS`).
    """
    meta = {
        "kind": kind,
        "lo": lo,
        "hi": hi,
        "unit": unit,
        "source": source,
        "doc": doc,
        "choices": choices,
        "nullable": nullable,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class WorldParams:
    consumers: int = param(
        100_000, 2, 50_000_000, unit="consumers", doc="Consumers (graph nodes) in the world."
    )
    brands: int = param(50, 1, 100_000, unit="brands", doc="Brands supplying products.")
    products_per_brand: int = param(6, 1, 1000, unit="products", doc="Products each brand lists.")
    categories: int = param(
        8, 1, 64, unit="categories", doc="Product categories consumers hold preferences over."
    )
    apparel_share: float = param(
        0.5,
        0,
        1,
        unit="share of categories",
        doc="Share of categories that are apparel-like (fit is hard to judge before delivery).",
    )
    days: int = param(
        120,
        1,
        100_000,
        unit="days",
        doc="Simulated days (one tick is one day); repeat purchase needs more than 90.",
    )


@dataclass(frozen=True)
class GraphParams:
    topology: str = param(
        "communities",
        choices=("communities", "edgelist", "well_mixed"),
        doc="'communities': clustered heavy-tailed graph with communities; 'edgelist': load "
        "`edgelist_path`; 'well_mixed': no graph, word of mouth reaches random consumers.",
    )
    mean_degree: float = param(10.0, 0.5, 1000, unit="friends", doc="Mean number of friends.")
    community_size: float = param(
        150.0, 2, 1e7, unit="consumers", doc="Mean community size (heavy-tailed sizes)."
    )
    mixing: float = param(
        0.15, 0, 1, unit="share of edges", doc="Share of edges that leave their community."
    )
    degree_sigma: float = param(
        0.9,
        0,
        3,
        unit="log-sd",
        doc="Spread of log degree propensity: larger is a heavier-tailed degree distribution.",
    )
    triadic_closure: float = param(
        0.3,
        0,
        1,
        unit="share of edges",
        doc="Share of the target edges made by closing triangles (raises clustering).",
    )
    edgelist_path: str = param(
        "",
        doc="Edge list file (two columns of node ids, whitespace or comma separated) "
        "for kind='edgelist'; the number of distinct nodes sets world.consumers.",
    )


@dataclass(frozen=True)
class ChannelParams:
    owners: bool = param(True, doc="The owner network ('fish school') sells.")
    streamer: bool = param(True, doc="The mega-streamer ('whale') sells.")
    conventional: bool = param(True, doc="Conventional e-commerce (search and ads) sells.")


@dataclass(frozen=True)
class ConsumerParams:
    preference_concentration: float = param(
        0.5,
        0.01,
        100,
        unit="Dirichlet alpha",
        doc="Concentration of category preferences: small is picky, large is indifferent.",
    )
    homophily: float = param(
        0.6,
        0,
        1,
        unit="share",
        doc="Weight of her graph region's taste in a consumer's preferences (the rest is her own).",
    )
    taste_region_size: float = param(
        150.0,
        2,
        1e8,
        unit="consumers",
        kind="world",
        doc="Size of the graph regions that share a taste.",
    )
    price_sensitivity: float = param(
        1.0, 0, 10, unit="mean", doc="Mean price sensitivity (lognormal across consumers)."
    )
    impulsiveness: float = param(
        0.3, 0, 1, unit="mean", doc="Mean impulsiveness (Beta across consumers)."
    )
    need_rate: float = param(
        0.040469,
        0,
        1,
        unit="probability/day",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Mean daily chance a new need arrives (Beta across consumers), in a category "
        "drawn from her preferences; a purchase in that category, through any channel, fills it.",
    )
    need_concentration: float = param(
        10.0,
        0.1,
        1e12,
        unit="Beta a+b",
        doc="How alike consumers' need rates are: large makes everyone's rate the mean.",
    )
    need_lifetime: float = param(
        20.0,
        1,
        10_000,
        unit="days",
        doc="Mean days an unfilled need stays open (geometric); a returned item's need reopens "
        "for this long.",
    )
    budget: float = param(
        600.0,
        0,
        1e9,
        unit="RMB/month",
        source="NBS 2023: online retail of physical goods 13.0 trillion RMB, ~770 RMB per "
        "person a month; the model's categories are part of it",
        doc="Mean monthly budget across channels (lognormal across consumers), refilled every "
        "30 days; a purchase she cannot afford ends her shopping for the day.",
    )
    budget_sigma: float = param(
        0.8, 0, 3, unit="log-sd", doc="Spread of monthly budgets across consumers."
    )
    engagement_trust: float = param(
        3.0,
        0,
        50,
        unit="log-odds per unit trust",
        doc="How trust moves engagement, the same in every channel: a member opens her owner's "
        "posts, a follower watches a session, with log-odds raised by this times (her trust - "
        "its initial mean).",
    )
    trust_owner: float = param(
        0.7, 0, 1, unit="trust", doc="Initial trust of a group member in her owner."
    )
    trust_streamer: float = param(
        0.6, 0, 1, unit="trust", doc="Initial trust of a follower in the streamer."
    )
    trust_friend: float = param(
        0.6, 0, 1, unit="trust", doc="Initial trust in a friend's recommendation."
    )
    trust_search: float = param(
        0.3, 0, 1, unit="trust", doc="Initial trust in search results and ads."
    )
    trust_sd: float = param(
        0.1, 0, 1, unit="sd", doc="Spread of initial trust across consumers (clipped to [0,1])."
    )


@dataclass(frozen=True)
class OwnerParams:
    count: int = param(
        500,
        0,
        5_000_000,
        unit="owners",
        doc="Shop owners ('small b'); each is also a consumer.",
        kind="lever",
    )
    groups_mean: float = param(
        1.6,
        1,
        4,
        unit="groups",
        source="brief T10 (1-4 groups a typical owner)",
        doc="Mean groups per owner (1 + binomial, at most 4).",
        kind="world",
    )
    group_size_median: float = param(
        60.0,
        1,
        GROUP_SIZE_CAP,
        unit="members",
        doc="Median group size at the start (lognormal): with owners and groups per owner, "
        "the owners' audience.",
        kind="lever",
    )
    group_size_sigma: float = param(
        0.8, 0, 3, unit="log-sd", doc="Spread of group sizes (heavy upper tail).", kind="world"
    )
    group_size_max: int = param(
        GROUP_SIZE_CAP,
        1,
        GROUP_SIZE_CAP,
        unit="members",
        source="brief: WeChat group size cap 500",
        doc="Largest group allowed.",
        kind="world",
    )
    local_share: float = param(
        0.85,
        0,
        1,
        unit="share",
        doc="Target share of members recruited from the owner's graph neighbourhood.",
        kind="world",
    )
    neighbourhood_hops: int = param(
        3, 1, 4, unit="hops", doc="How far in the graph an owner recruits members.", kind="world"
    )
    recruitment: str = param(
        "random",
        choices=("random", "degree", "communities", "celf"),
        doc="Which consumers the platform makes its first owners (sim.world.recruitment): "
        "'random'; 'degree', the best connected; 'communities', spread over the graph's "
        "communities in proportion to their sizes; 'celf', greedy influence maximisation on "
        "the word-of-mouth cascade (CELF, edge probability word_of_mouth.edge_prob x trust).",
        kind="lever",
    )
    products_per_day: float = param(
        3.0,
        0,
        50,
        unit="products/day",
        doc="Mean products an owner posts to her groups a day (times her activity).",
        kind="lever",
    )
    activity_sigma: float = param(
        1.484548,
        0,
        3,
        unit="log-sd",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Spread of owners' posting activity (lognormal, mean 1): large is a heavier tail.",
    )
    open_rate: float = param(
        0.439427,
        0,
        1,
        unit="probability/day",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Chance a member opens the group's posts on a day.",
    )
    skill: float = param(
        0.5, 0, 1, unit="skill", doc="Mean initial owner skill (Beta across owners)."
    )
    skill_decay: float = param(
        0.01,
        0,
        1,
        unit="1/day",
        doc="Daily relaxation of skill towards its initial level without training.",
    )
    knowledge: float = param(
        0.5,
        0,
        1,
        unit="share",
        doc="How much of her members' true preference profile an owner knows at the start.",
    )
    learning_rate: float = param(
        0.05,
        0,
        1,
        unit="per order",
        doc="Step of an owner's estimate per member order or return she sees; times her skill, "
        "per member she hears out.",
    )
    listening: float = param(
        2.0,
        0,
        500,
        unit="members/day",
        doc="Members an owner hears out a day (chats, questions); each teaches her their taste.",
    )
    pick_sharpness: float = param(
        3.0, 0, 50, unit="exponent", doc="How strongly picks follow the owner's estimate."
    )
    commission: float = param(
        0.15,
        0,
        1,
        unit="share of paid price",
        doc="Owner commission paid by the brand.",
        kind="lever",
    )
    discount: float = param(
        0.1, 0, 0.95, unit="share of list price", doc="Owner-channel discount.", kind="lever"
    )
    advice: float = param(
        0.5,
        0,
        1,
        unit="share",
        doc="How much a skilled owner's advice narrows the fit surprise at delivery.",
    )
    invite_rate: float = param(
        0.02,
        0,
        1,
        unit="invitations/member-day",
        doc="Daily chance a member invites a friend to her group, times her trust in her owner; "
        "the friend joins if she is in no active group, the group has room, and she trusts "
        "friends enough (a draw against her trust in friends).",
    )
    owner_invites: float = param(
        1.0,
        0,
        100,
        unit="invitations/day",
        doc="Friends an owner herself invites a day (Poisson), into her emptiest group.",
    )
    recruit_rate: float = param(
        0.005,
        0,
        1,
        unit="probability/owner-day",
        doc="Daily chance an active owner recruits one of her satisfied members (trust in her "
        "owner >= owners.recruit_trust) as a new owner (the platform's referral model); the "
        "same chance for a quit owner's group, whose recruit takes the group over.",
    )
    recruit_trust: float = param(
        0.8, 0, 1, unit="trust", doc="Trust in her owner a member needs to be recruited."
    )
    quit_rate: float = param(
        0.002,
        0,
        1,
        unit="probability/day",
        source="assumption (about half of owners gone within a year); swept in "
        "scenarios/sweeps/owners_vs_streamer_robustness.toml",
        doc="Baseline daily chance an active owner quits, whatever she earns.",
    )
    churn_grace_days: int = param(
        30, 0, 10_000, unit="days", doc="Days before a new owner can churn."
    )
    churn_threshold: float = param(
        20.0,
        0,
        1e9,
        unit="RMB/30 days",
        doc="Earnings over the last 30 days below which she may quit.",
    )
    churn_rate: float = param(
        0.01, 0, 1, unit="probability/day", doc="Daily chance a low-earning owner quits."
    )
    leave_threshold: float = param(
        0.2, 0, 1, unit="trust", doc="Members trusting their owner less than this may leave."
    )
    leave_rate: float = param(
        0.05, 0, 1, unit="probability/day", doc="Daily chance a distrustful member leaves."
    )


@dataclass(frozen=True)
class StreamerParams:
    follower_share: float = param(
        0.3,
        0,
        1,
        unit="share of consumers",
        source="brief: 64-80M followers; scaled with the population",
        doc="Share of consumers following the streamer at the start.",
        kind="lever",
    )
    sessions_per_week: float = param(
        5.0, 0, 7, unit="sessions/week", doc="Live sessions a week.", kind="lever"
    )
    products_per_session: int = param(
        60,
        1,
        1000,
        unit="products",
        source="brief: 26-279 products a session",
        doc="Products presented per session.",
        kind="lever",
    )
    products_seen: int = param(
        7,
        1,
        1000,
        unit="products",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Products a viewer watches in one session.",
    )
    attention_rate: float = param(
        0.2, 0, 1, unit="probability/session", doc="Chance a follower watches a session."
    )
    vetting_capacity: float = param(
        155.712666,
        0,
        1e6,
        unit="products/week",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Products her team can check properly a week, shared over the week's sessions; the "
        "rest go on air at their brand's unscreened quality.",
        kind="uncertainty",
    )
    vetting_threshold: float = param(
        0.9, 0, 1, unit="quality", doc="A checked product below this quality is rejected."
    )
    commission: float = param(
        0.2,
        0,
        1,
        unit="share of paid price",
        source="brief: ~20-25% commission",
        doc="Streamer commission.",
        kind="lever",
    )
    discount: float = param(
        0.4,
        0,
        0.95,
        unit="share of list price",
        source="brief: ~40% discount demanded",
        doc="Discount the streamer demands.",
        kind="lever",
    )
    slot_fee: float = param(
        45.0,
        0,
        1e9,
        unit="RMB per 1,000 expected viewers of the slot",
        source="derived: fees near 10-30% of a slot's sales (brief: 300k RMB against 1-2M RMB "
        "sold) at ~0.22 RMB sold per product exposure (T4: ~2 RMB a view, ~9 products a view)",
        doc="Fixed fee a brand pays for one product slot, per 1,000 viewers the slot is expected "
        "to reach (followers x attention_rate x products_seen / products_per_session).",
        kind="lever",
    )
    screened: bool = param(
        False,
        doc="She signs only brands the platform's selection admitted (off: any brand that pays).",
        kind="lever",
    )
    brand_share: float = param(
        0.5,
        0,
        1,
        unit="share of brands",
        doc="Share of brands that contract with the streamer.",
        kind="lever",
    )
    discovery: float = param(
        0.01,
        0,
        10,
        unit="new followers per viewer",
        doc="New followers a session wins (Poisson, per viewer) among non-followers: the "
        "platform pushes a live room to people outside its audience.",
    )
    follow_on_purchase: float = param(
        0.2,
        0,
        1,
        unit="probability",
        doc="Chance a non-follower who buys a streamer product (after a friend's forward) "
        "follows her.",
    )
    unfollow_threshold: float = param(
        0.2, 0, 1, unit="trust", doc="Followers trusting the streamer less than this may unfollow."
    )
    unfollow_rate: float = param(
        0.05, 0, 1, unit="probability/day", doc="Daily chance a distrustful follower unfollows."
    )


@dataclass(frozen=True)
class ConventionalParams:
    search_rate: float = param(
        0.3,
        0,
        1,
        unit="probability/day",
        doc="Daily chance a consumer with an open need searches for it.",
    )
    search_results: int = param(4, 1, 100, unit="products", doc="Products one search shows.")
    ad_cost: float = param(
        0.3,
        0,
        1e6,
        unit="RMB per exposure",
        doc="What a brand pays per search/ad exposure.",
        kind="lever",
    )
    discount: float = param(
        0.0, 0, 0.95, unit="share of list price", doc="Conventional discount.", kind="lever"
    )


@dataclass(frozen=True)
class PlatformParams:
    selection_strictness: float = param(
        0.3,
        0,
        0.95,
        unit="share of brands rejected",
        doc="Share of brands the platform rejects, worst audited quality first; owners sell the "
        "admitted brands' products only.",
        kind="lever",
    )
    selection_noise: float = param(
        0.05, 0, 1, unit="sd of quality", doc="Error of the platform's audit of a brand's quality."
    )
    live_2b_per_week: float = param(
        2.0, 0, 7, unit="sessions/week", doc="2b live training sessions a week.", kind="lever"
    )
    live_2b_attendance: float = param(
        0.6, 0, 1, unit="probability", doc="Chance an active owner attends a 2b live session."
    )
    live_2b_skill_gain: float = param(
        0.05, 0, 1, unit="share of the gap to 1", doc="Skill gained by attending one session."
    )
    live_2b_material: float = param(
        0.3,
        0,
        10,
        unit="relative open-rate boost",
        doc="Material handed out at a 2b session raises the open rate of her next posts.",
        kind="lever",
    )
    live_2b_material_days: int = param(
        3, 0, 365, unit="days", doc="How long 2b material keeps its effect."
    )
    take: float = param(
        0.05,
        0,
        1,
        unit="share of paid price",
        source="platform technical service fees of 2-5% (Tmall fee schedule); the same for "
        "every channel: each sells through a platform",
        doc="Share of every sale's price the selling platform keeps (all channels alike).",
    )


@dataclass(frozen=True)
class BrandParams:
    price_median: float = param(
        120.0,
        0.01,
        1e7,
        unit="RMB",
        source="brief T4: 70-200 RMB an order",
        doc="Median list price.",
    )
    price_sigma: float = param(0.5, 0, 3, unit="log-sd", doc="Spread of list prices.")
    quality: float = param(
        0.88,
        0,
        1,
        unit="probability",
        doc="Mean brand quality: the chance an item is free of defects (Beta across brands).",
    )
    quality_concentration: float = param(
        23.802646,
        0.1,
        1e4,
        unit="Beta a+b",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Concentration of brand quality around its mean (lower: a wider spread of brands).",
    )
    product_quality_concentration: float = param(
        100.0,
        0.1,
        1e5,
        unit="Beta a+b",
        doc="Concentration of a product's quality around its brand's quality.",
    )
    margin: float = param(
        0.65,
        0,
        1,
        unit="share of list price",
        source="gross margins of listed consumer brands: cosmetics ~70% (Proya 2023), "
        "sportswear ~50-60%, apparel ~40-45%",
        doc="Mean gross margin before channel costs.",
    )
    margin_sigma: float = param(
        0.08, 0, 0.5, unit="sd of share", doc="Spread of gross margins across products."
    )
    reverse_logistics: float = param(
        15.0, 0, 1e6, unit="RMB per return", doc="Cost of handling one return."
    )
    exchange_cost: float = param(
        10.0,
        0,
        1e6,
        unit="RMB per resolved problem",
        doc="Shipping and handling of an exchange or a fix that resolves a problem (a defective "
        "item exchanged also costs its cost of goods).",
    )
    loss_tolerance: float = param(
        0.2,
        0,
        10,
        unit="share of net sales in the channel",
        source="brief: brands often lose money on a head session, but not more than they sell "
        "(a loss accepted as the price of being seen); to calibrate",
        doc="How much a brand accepts to lose in a channel, as a share of its net sales there, "
        "before it leaves at a review (every channel alike).",
    )
    review_days: int = param(
        30,
        1,
        100_000,
        unit="days",
        doc="How often a brand reviews each channel contract from the profit it has realised "
        "there since the contract began; it leaves a channel that has lost it money.",
    )


@dataclass(frozen=True)
class HypeParams:
    """Hype is a property of the selling format, not of the channel (ODD 7.3)."""

    live: float = param(
        1.0,
        0,
        5,
        unit="hype",
        source="live-stream urgency and scarcity cues (Wongkitrungrueng & Assarut 2020)",
        doc="Hype of a live session (the streamer's format).",
        kind="lever",
    )
    post: float = param(
        0.2,
        0,
        5,
        unit="hype",
        source="article: owners' posts are advice to people they know",
        doc="Hype of a group post (the owners' format).",
        kind="lever",
    )
    search: float = param(
        0.0, 0, 5, unit="hype", doc="Hype of a search result or ad (a listing).", kind="lever"
    )
    material: float = param(
        0.5,
        0,
        5,
        unit="hype",
        source="article: 2b live hands owners brand material and selling points",
        doc="Hype of a group post built on 2b-live material (while the material lasts).",
        kind="lever",
    )


@dataclass(frozen=True)
class AfterSalesParams:
    """Who handles a problem, and how many a day (ODD 7.5)."""

    resolution: float = param(
        0.4,
        0,
        1,
        unit="probability",
        doc="Chance a service desk (the platform's or a brand's) resolves a problem it handles "
        "(exchange, fix, advice) before the buyer returns the item.",
    )
    owner_resolution: float = param(
        0.5,
        0,
        1,
        unit="probability",
        source="article: owners answer after-sales themselves; scaled by her skill",
        doc="Chance a fully skilled owner resolves a problem she handles (she knows the buyer).",
    )
    owner_capacity: float = param(
        5.0, 0, 1e6, unit="problems/day", doc="Problems one owner can handle a day."
    )
    platform_capacity: float = param(
        50.0,
        0,
        1e9,
        unit="problems/day per 100,000 consumers",
        source="article: the platform's 4S after-sales service behind owners",
        doc="Problems the platform's service handles a day (owner-channel problems the owner "
        "did not resolve), scaled with the world.",
        kind="lever",
    )
    queue_days: float = param(
        3.0,
        1,
        365,
        unit="days",
        doc="A desk works through a few days' problems together: its load is the moving "
        "average of its daily problems over about this many days (1: today's alone).",
    )
    brand_capacity: float = param(
        200.0,
        0,
        1e9,
        unit="problems/day per 100,000 consumers, all brands together",
        source="brief: a streamer's after-sales goes to the merchant",
        doc="Problems the brands' service desks handle a day together (streamer and "
        "conventional orders), shared equally among the brands and scaled with the world: a "
        "brand's desk can be overloaded by a session's burst of its deliveries.",
    )


@dataclass(frozen=True)
class PurchaseParams:
    intercept: float = param(
        -10.997031,
        -50,
        50,
        unit="log-odds",
        doc="Baseline log-odds of buying.",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
    )
    fit: float = param(2.0, 0, 50, unit="log-odds per unit fit", doc="Weight of expected fit.")
    trust: float = param(
        2.136231,
        0,
        50,
        unit="log-odds per unit trust",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Weight of trust in the source.",
    )
    hype: float = param(
        1.738644,
        0,
        50,
        unit="log-odds per unit hype x impulsiveness",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Weight of hype.",
    )
    price: float = param(
        1.0, 0, 50, unit="log-odds per log price", doc="Weight of log(paid / median price)."
    )
    need: float = param(
        4.230863,
        0,
        50,
        unit="log-odds",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Extra log-odds when the consumer has an open need in the product's category.",
    )
    hype_expectation: float = param(
        0.5, 0, 5, unit="expected fit per unit hype", doc="How much hype inflates expectation."
    )


@dataclass(frozen=True)
class DeliveryParams:
    lag_min: int = param(2, 0, 365, unit="days", doc="Shortest delivery lag.")
    lag_max: int = param(5, 0, 365, unit="days", doc="Longest delivery lag.")
    fit_noise: float = param(
        0.2, 0, 5, unit="sd of fit", doc="Surprise in realised fit at delivery."
    )
    apparel_fit_noise: float = param(
        3.274827,
        1,
        10,
        unit="multiplier",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Fit surprise multiplier for apparel-like categories.",
    )


@dataclass(frozen=True)
class ReturnParams:
    intercept: float = param(
        -3.820971,
        -50,
        50,
        unit="log-odds",
        doc="Baseline log-odds of returning.",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
    )
    defect: float = param(3.5, 0, 50, unit="log-odds", doc="Extra log-odds for a defective item.")
    misfit: float = param(
        2.640352,
        0,
        50,
        unit="log-odds",
        doc="Extra log-odds for a misfit.",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
    )
    gap: float = param(
        2.543199,
        0,
        50,
        unit="log-odds per unit gap",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Weight of the expectation gap.",
    )
    impulse: float = param(
        2.395767,
        0,
        50,
        unit="log-odds per unit hype x impulsiveness",
        source="calibrated: ABC-SMC posterior median, docs/calibration",
        doc="Weight of impulse.",
    )
    misfit_threshold: float = param(
        0.25, 0, 1, unit="fit", doc="Realised fit below which an item is a misfit."
    )


@dataclass(frozen=True)
class WordOfMouthParams:
    forward_rate: float = param(
        0.3, 0, 1, unit="probability", doc="Chance a buyer forwards her purchase to friends."
    )
    advocacy_rate: float = param(
        0.02,
        0,
        1,
        unit="probability/day",
        doc="Daily chance a satisfied customer recommends her last kept purchase.",
    )
    advocacy_threshold: float = param(
        0.7, 0, 1, unit="satisfaction", doc="Satisfaction needed to recommend."
    )
    edge_prob: float = param(
        0.1,
        0,
        1,
        unit="probability",
        doc="Chance a forward reaches one friend, times the friend's trust when trust-weighted.",
    )
    trust_weighted: bool = param(
        True, doc="Edge probability is edge_prob x the receiver's trust in friends."
    )
    hype_carryover: float = param(
        0.5, 0, 1, unit="share", doc="Share of the channel's hype a forward carries."
    )
    max_generations: int = param(
        20, 1, 10_000, unit="generations/day", doc="Forwarding generations within one day."
    )


@dataclass(frozen=True)
class FeedbackParams:
    trust_gain: float = param(
        0.1,
        0,
        1,
        unit="per delivered order",
        source="Slovic 1993: trust is built slowly and lost fast",
        doc="Step of trust towards an order's satisfaction when it is above her trust.",
    )
    trust_loss: float = param(
        0.3,
        0,
        1,
        unit="per delivered order",
        source="Slovic 1993: trust is built slowly and lost fast",
        doc="Step of trust towards an order's satisfaction when it is below her trust.",
    )
    heard_satisfaction: float = param(
        0.9,
        0,
        1,
        unit="satisfaction",
        doc="What being heard out by her owner is worth to a member: her trust in the owner "
        "moves towards it (steps feedback.trust_gain / trust_loss).",
    )
    resolved_satisfaction: float = param(
        0.7, 0, 1, unit="satisfaction", doc="Satisfaction after a problem is resolved."
    )


@dataclass(frozen=True)
class EventParams:
    streamer_removed_day: int | None = param(
        None, 0, 100_000, unit="day", nullable=True, doc="Day the streamer is removed (banned)."
    )
    ban_migration: float = param(
        0.05,
        0,
        1,
        unit="probability/day",
        source="brief T8: part of a banned streamer's audience turns to other channels",
        doc="Extra daily chance a banned streamer's former follower searches.",
    )
    ban_migration_days: int = param(
        14, 0, 100_000, unit="days", doc="How long a banned streamer's audience looks elsewhere."
    )
    churn_wave_day: int | None = param(
        None, 0, 100_000, unit="day", nullable=True, doc="Day of an owner churn wave."
    )
    churn_wave_share: float = param(
        0.5, 0, 1, unit="share of active owners", doc="Owners quitting in the wave."
    )
    defective_batch_day: int | None = param(
        None,
        0,
        100_000,
        unit="day",
        nullable=True,
        doc="First delivery day on which the brand's items are of the batch's quality.",
    )
    defective_batch_brand: int = param(0, 0, 100_000, unit="brand id", doc="Brand of the batch.")
    defective_batch_days: int = param(
        14, 1, 100_000, unit="days", doc="For how many delivery days the batch's quality applies."
    )
    defective_batch_quality: float = param(
        0.5,
        0,
        1,
        unit="probability",
        doc="Quality of the brand's items delivered during the batch.",
    )


KINDS = ("world", "lever", "uncertainty", "event")

# The kind of every parameter of a section, unless its declaration says otherwise.
SECTION_KINDS: dict[str, str] = {
    "world": "world",
    "graph": "world",
    "channels": "lever",
    "consumers": "uncertainty",
    "owners": "uncertainty",
    "streamer": "uncertainty",
    "conventional": "uncertainty",
    "platform": "uncertainty",
    "brands": "uncertainty",
    "hype": "uncertainty",
    "after_sales": "uncertainty",
    "purchase": "uncertainty",
    "delivery": "uncertainty",
    "returns": "uncertainty",
    "word_of_mouth": "uncertainty",
    "feedback": "uncertainty",
    "events": "event",
}

SECTIONS: dict[str, type] = {
    "world": WorldParams,
    "graph": GraphParams,
    "channels": ChannelParams,
    "consumers": ConsumerParams,
    "owners": OwnerParams,
    "streamer": StreamerParams,
    "conventional": ConventionalParams,
    "platform": PlatformParams,
    "brands": BrandParams,
    "hype": HypeParams,
    "after_sales": AfterSalesParams,
    "purchase": PurchaseParams,
    "delivery": DeliveryParams,
    "returns": ReturnParams,
    "word_of_mouth": WordOfMouthParams,
    "feedback": FeedbackParams,
    "events": EventParams,
}


@dataclass(frozen=True)
class Params:
    """The whole configuration of one run. Validated on construction; immutable."""

    seed: int = param(0, 0, 2**63 - 1, doc="Seed of the run's random streams.")
    world: WorldParams = field(default_factory=WorldParams)
    graph: GraphParams = field(default_factory=GraphParams)
    channels: ChannelParams = field(default_factory=ChannelParams)
    consumers: ConsumerParams = field(default_factory=ConsumerParams)
    owners: OwnerParams = field(default_factory=OwnerParams)
    streamer: StreamerParams = field(default_factory=StreamerParams)
    conventional: ConventionalParams = field(default_factory=ConventionalParams)
    platform: PlatformParams = field(default_factory=PlatformParams)
    brands: BrandParams = field(default_factory=BrandParams)
    hype: HypeParams = field(default_factory=HypeParams)
    after_sales: AfterSalesParams = field(default_factory=AfterSalesParams)
    purchase: PurchaseParams = field(default_factory=PurchaseParams)
    delivery: DeliveryParams = field(default_factory=DeliveryParams)
    returns: ReturnParams = field(default_factory=ReturnParams)
    word_of_mouth: WordOfMouthParams = field(default_factory=WordOfMouthParams)
    feedback: FeedbackParams = field(default_factory=FeedbackParams)
    events: EventParams = field(default_factory=EventParams)

    def __post_init__(self) -> None:
        validate(self)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Params:
        """Build from a nested mapping (e.g. parsed TOML); unknown keys are errors."""
        where = f"{source}: " if source else ""
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "seed":
                kwargs["seed"] = _coerce(cls, "seed", value, "seed", where)
            elif key in SECTIONS:
                if not isinstance(value, Mapping):
                    raise ParameterError(f"{where}{key} must be a table of parameters")
                kwargs[key] = _section_from_dict(SECTIONS[key], key, value, where)
            else:
                raise ParameterError(f"{where}unknown key '{key}'{_did_you_mean(key, _top_keys())}")
        try:
            return cls(**kwargs)
        except ParameterError as err:
            raise ParameterError(f"{where}{err}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> Params:
        """Load a TOML file of parameter sections; errors name the file."""
        return cls.from_dict(read_toml(path), source=str(path))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Params:
        """A copy with dotted-key overrides applied, e.g. ``{"owners.commission": 0.2}``."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            parts = dotted.split(".")
            if len(parts) == 1 and parts[0] == "seed":
                data["seed"] = value
                continue
            if len(parts) != 2 or parts[0] not in SECTIONS:
                raise ParameterError(
                    f"unknown key '{dotted}'{_did_you_mean(parts[0], _top_keys())}"
                )
            data[parts[0]][parts[1]] = value
        return Params.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/TOML-friendly)."""
        return dataclasses.asdict(self)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file (data only: nothing in it is executed); errors name the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParameterError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ParameterError(f"{path}: not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise ParameterError(f"{path}: not a text file (UTF-8 TOML expected)") from None


def _top_keys() -> list[str]:
    return ["seed", *SECTIONS]


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _section_from_dict(cls: type, name: str, data: Mapping[str, Any], where: str) -> Any:
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ParameterError(f"{where}unknown key '{name}.{key}'{_did_you_mean(key, names)}")
        kwargs[key] = _coerce(cls, key, value, f"{name}.{key}", where)
    return cls(**kwargs)


def _coerce(cls: type, key: str, value: Any, dotted: str, where: str) -> Any:
    """Check the type of one value against its declared default and convert int -> float."""
    f = next(f for f in fields(cls) if f.name == key)
    default = f.default
    if value is None and f.metadata.get("nullable"):
        return None
    kind = type(default) if default is not None else int
    ok: bool
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok and isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ParameterError(
            f"{where}{dotted} = {value!r} has the wrong type: expected {kind.__name__}"
        )
    return value


def _check_field(section: str, f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    dotted = f"{section}.{f.name}" if section else f.name
    if value is None:
        if meta.get("nullable"):
            return
        raise ParameterError(f"{dotted} must be set")
    if meta.get("choices") and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise ParameterError(f"{dotted} = {value!r} is not allowed: choose one of {allowed}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"{dotted} = {value!r} must be a finite number")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParameterError(
            f"{dotted} = {value!r} is outside the allowed range [{lo}, {hi}]"
            f" ({meta.get('doc', '').rstrip('.')})"
        )


def validate(p: Params) -> None:
    """Raise ParameterError for the first out-of-range or inconsistent parameter."""
    _check_field("", next(f for f in fields(Params) if f.name == "seed"), p.seed)
    for name in SECTIONS:
        section = getattr(p, name)
        if not isinstance(section, SECTIONS[name]):
            raise ParameterError(f"{name} must be a {SECTIONS[name].__name__}")
        for f in fields(SECTIONS[name]):
            _check_field(name, f, getattr(section, f.name))
    # Cross-parameter rules.
    if p.owners.count > p.world.consumers:
        raise ParameterError(
            f"owners.count = {p.owners.count} is outside the allowed range "
            f"[0, world.consumers = {p.world.consumers}]"
        )
    if p.delivery.lag_min > p.delivery.lag_max:
        raise ParameterError(
            f"delivery.lag_min = {p.delivery.lag_min} must not exceed "
            f"delivery.lag_max = {p.delivery.lag_max}"
        )
    if p.events.defective_batch_brand >= p.world.brands:
        raise ParameterError(
            f"events.defective_batch_brand = {p.events.defective_batch_brand} is outside the "
            f"allowed range [0, world.brands - 1 = {p.world.brands - 1}]"
        )
    pool = round(p.streamer.brand_share * p.world.brands) * p.world.products_per_brand
    if p.channels.streamer and p.streamer.products_per_session > pool:
        raise ParameterError(
            f"streamer.products_per_session = {p.streamer.products_per_session} is outside the "
            f"allowed range [1, {pool}] (the products of the brands contracted with the streamer: "
            "round(streamer.brand_share x world.brands) x world.products_per_brand)"
        )
    if p.graph.topology == "edgelist" and not p.graph.edgelist_path:
        raise ParameterError("graph.edgelist_path must be set when graph.topology = 'edgelist'")


def field_of(dotted: str) -> dataclasses.Field:
    """The declaration of a parameter, by its dotted name ("owners.open_rate").

    Raises ParameterError, with a suggestion, for an unknown name.
    """
    section, _, name = dotted.partition(".")
    if section not in SECTIONS or not name:
        known = [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in fields(c)]
        raise ParameterError(f"unknown parameter '{dotted}'{_did_you_mean(dotted, known)}")
    names = {f.name: f for f in fields(SECTIONS[section])}
    if name not in names:
        raise ParameterError(f"unknown parameter '{dotted}'{_did_you_mean(name, list(names))}")
    return names[name]


def check_value(dotted: str, value: Any, label: str | None = None) -> Any:
    """Type-check and range-check one parameter value on its own; returns it coerced.

    ``label`` is how the key is named in the message (e.g. its path in a scenario file).

    >>> check_value("owners.open_rate", 1)
    1.0
    """
    section = dotted.partition(".")[0]
    f = field_of(dotted)
    shown = label or dotted
    value = _coerce(SECTIONS[section], f.name, value, shown, "")
    try:
        _check_field("", f, value)
    except ParameterError as err:
        raise ParameterError(shown + str(err)[len(f.name) :]) from None
    return value


def is_whole_number(dotted: str) -> bool:
    """Does the parameter take whole numbers (a count, or the day of an event)?

    >>> is_whole_number("owners.count"), is_whole_number("owners.open_rate")
    (True, False)
    """
    f = field_of(dotted)
    whole = isinstance(f.default, int) and not isinstance(f.default, bool)
    return whole or (f.default is None and bool(f.metadata.get("nullable")))


def kind_of(dotted: str) -> str:
    """The exploratory-modelling kind of a parameter: world, lever, uncertainty or event.

    >>> kind_of("owners.commission"), kind_of("owners.open_rate"), kind_of("world.consumers")
    ('lever', 'uncertainty', 'world')
    """
    return field_of(dotted).metadata.get("kind") or SECTION_KINDS[dotted.partition(".")[0]]


def parameters_of_kind(kind: str) -> list[str]:
    """Dotted names of all parameters of one kind, in declaration order."""
    return [
        f"{s}.{f.name}"
        for s, c in SECTIONS.items()
        for f in fields(c)
        if kind_of(f"{s}.{f.name}") == kind
    ]


def parameter_table() -> str:
    """The parameter table of docs/ODD.md as Markdown (generated from the declarations)."""
    rows = [
        "| parameter | kind | default | unit | allowed | source | meaning |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name: str, f: dataclasses.Field) -> str:
        m = f.metadata
        if m.get("choices"):
            allowed = " / ".join(m["choices"])
        elif m.get("lo") is None and m.get("hi") is None:
            allowed = "true / false" if isinstance(f.default, bool) else "text"
        else:
            allowed = f"[{m['lo']:g}, {m['hi']:g}]"
        default = "none" if f.default is None else repr(f.default)
        kind = "world" if name == "seed" else kind_of(name)
        return (
            f"| `{name}` | {kind} | {default} | {m['unit']} | {allowed} | {m['source']} | "
            f"{m['doc']} |"
        )

    rows.append(row("seed", Params.__dataclass_fields__["seed"]))
    for section, cls in SECTIONS.items():
        rows += [row(f"{section}.{f.name}", f) for f in fields(cls)]
    return "\n".join(rows)


if __name__ == "__main__":  # python -m sim.world.params: the ODD parameter table
    print(parameter_table())
