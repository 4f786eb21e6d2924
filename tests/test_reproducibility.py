"""One seed fixes a run exactly; different seeds give different runs; worlds are shared."""

import numpy as np
import pandas as pd
import pytest

from conftest import small
from sim.world.model import CommerceModel, run


def test_same_seed_same_outputs():
    a, b = run(small({"seed": 11})), run(small({"seed": 11}))
    pd.testing.assert_frame_equal(a.summary, b.summary)
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries)
    pd.testing.assert_frame_equal(a.orders, b.orders)


def test_different_seeds_differ():
    a, b = run(small({"seed": 11})), run(small({"seed": 12}))
    assert not a.summary.value.equals(b.summary.value)
    assert len(a.orders) != len(b.orders) or not a.orders.equals(b.orders)


def test_levers_do_not_change_the_world():
    """Common random numbers: the graph, consumers and groups depend only on the seed and the
    world's size, not on the channel mix or levers."""
    base = CommerceModel(small({"seed": 5}))
    other = CommerceModel(
        small({"seed": 5, "channels.streamer": False, "hype.live": 3.0, "owners.open_rate": 0.9})
    )
    assert (base.graph != other.graph).nnz == 0
    assert np.array_equal(base.consumers.preference, other.consumers.preference)
    assert np.array_equal(base.consumers.group, other.consumers.group)
    assert np.array_equal(base.catalogue.base_quality, other.catalogue.base_quality)


def test_more_owners_keep_the_first_ones():
    few = CommerceModel(small({"seed": 5, "owners.count": 20}))
    many = CommerceModel(small({"seed": 5, "owners.count": 40}))
    assert np.array_equal(few.owners.node, many.owners.node[:20])


def test_consumers_drawn_beside_the_owners_are_the_ones_drawn_before_them(monkeypatch):
    """The build draws the consumers on a second thread while the owners take their places;
    their streams are their own, so the world is the one drawn one after the other (with the
    celf rule too, which reads the consumers' trust while placing the owners)."""
    from sim.world import pieces

    celf = {"owners.recruitment": "celf", "owners.count": 5}
    for extra in ({}, celf, {"owners.recruitment": "degree"}):
        monkeypatch.setattr(pieces, "spare_core", lambda: True)  # (even on a one-core machine)
        beside = CommerceModel(small({"seed": 8, **extra}))
        monkeypatch.setattr(pieces, "spare_core", lambda: False)
        before = CommerceModel(small({"seed": 8, **extra}))
        monkeypatch.undo()
        for name in ("preference", "trust", "impulsiveness", "price_sensitivity", "group"):
            assert np.array_equal(getattr(beside.consumers, name), getattr(before.consumers, name))
        assert np.array_equal(beside.owners.node, before.owners.node)
        assert np.array_equal(beside.owners.skill, before.owners.skill)


def test_an_error_while_drawing_the_consumers_reaches_the_build(monkeypatch):
    import sim.world.model as model_module

    def broken(*args):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(model_module, "Consumers", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        CommerceModel(small({"seed": 8}))


def test_draws_in_two_pieces_are_the_draws_in_one(monkeypatch):
    """sim.world.pieces: every purchase batch cut in two (the second piece on a second
    thread) gives the run that one pass gives, to the bit."""
    from concurrent.futures import ThreadPoolExecutor

    from sim.world import pieces

    params = small({"seed": 4, "world.days": 20})
    whole = run(params)
    with ThreadPoolExecutor(1) as pool:  # (a second thread even on a one-core machine)
        monkeypatch.setattr(pieces, "spare_core", lambda: True)
        monkeypatch.setattr(pieces, "_piece_pool", lambda: pool)
        monkeypatch.setattr(pieces, "SMALLEST", 2)
        cut = run(params)
    for table in ("timeseries", "orders", "summary"):
        pd.testing.assert_frame_equal(getattr(cut, table), getattr(whole, table), check_exact=True)


def test_a_failing_first_piece_waits_for_the_second(monkeypatch):
    import threading
    import time

    from sim.world import pieces

    finished = threading.Event()

    def slow():
        time.sleep(0.2)
        finished.set()

    def broken():
        raise ValueError("first piece")

    monkeypatch.setattr(pieces, "spare_core", lambda: True)  # (a thread even on one core)
    with pytest.raises(ValueError, match="first piece"):
        pieces.both(broken, slow)
    assert finished.is_set()


def test_a_sweeps_worker_stays_on_one_core(monkeypatch):
    from sim.world import pieces

    monkeypatch.setattr(pieces, "_one_core", False)
    pieces.stay_on_one_core()
    assert not pieces.spare_core() and pieces.halves(10**7) == 10**7
