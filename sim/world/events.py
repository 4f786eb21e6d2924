"""Scheduled events (ODD 7.9): the streamer's removal, a churn wave of owners, a defective
batch of one brand.

A banned streamer's former followers are *displaced*: for ``events.ban_migration_days`` days
from the day after the ban each of them also searches with a daily chance
(:func:`displaced_searchers`), on a stream of its own so that everyone else's draws stay paired
with a run without the ban.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim.world.model import CommerceModel


def apply_events(model: CommerceModel) -> None:
    """Today's events: on ``events.streamer_removed_day`` the streamer is removed
    (:func:`remove_streamer`); on ``events.churn_wave_day`` a share ``churn_wave_share`` of
    the active owners quit (stream ``events``); while a defective batch lasts, brand
    ``defective_batch_brand``'s products have quality ``defective_batch_quality``, and their
    base quality again afterwards. Changes the streamer, followers, owners and
    ``catalogue.quality``."""
    e = model.params.events
    if e.streamer_removed_day is not None and model.day == e.streamer_removed_day:
        remove_streamer(model)
    if e.churn_wave_day is not None and model.day == e.churn_wave_day:
        model.owners.churn_wave(e.churn_wave_share, model.day, model.streams["events"])
    if e.defective_batch_day is not None:
        products = model.brands[e.defective_batch_brand].products
        on = e.defective_batch_day <= model.day < e.defective_batch_day + e.defective_batch_days
        model.catalogue.quality[products] = (
            e.defective_batch_quality if on else model.catalogue.base_quality[products]
        )


def remove_streamer(model: CommerceModel) -> None:
    """The streamer is banned: no more sessions, her links and following vanish. Her former
    followers are displaced demand (``model.displaced``) until ``model.displaced_until``,
    ``events.ban_migration_days`` days from tomorrow (see :func:`displaced_searchers`)."""
    model.streamer.active = False
    model.displaced = np.flatnonzero(model.consumers.follows)
    # The ban comes after today's market draw: the displaced look elsewhere from tomorrow,
    # for ban_migration_days days.
    model.displaced_until = model.day + 1 + model.params.events.ban_migration_days
    model.consumers.follows[:] = False


def displaced_searchers(model: CommerceModel) -> np.ndarray:
    """The audience of a banned streamer looks elsewhere (T8): while the ban's migration lasts,
    each former follower searches today with chance ``events.ban_migration`` (stream
    ``migration``). Returns today's extra searchers (none outside the migration)."""
    if model.displaced.size and model.day < model.displaced_until:
        rng = model.streams["migration"]
        extra = rng.random(model.displaced.size) < model.params.events.ban_migration
        return model.displaced[extra]
    return np.zeros(0, dtype=np.int64)
