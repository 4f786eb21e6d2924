"""Parameters: validation with clear messages, TOML loading, overrides."""

import pytest

from sim.world.params import GROUP_SIZE_CAP, ParameterError, Params


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"world.consumers": -5}, r"world\.consumers = -5 is outside the allowed range \[2, "),
        ({"owners.count": -1}, r"owners\.count = -1 is outside the allowed range \[0, "),
        (
            {"owners.open_rate": 1.5},
            r"owners\.open_rate = 1\.5 is outside the allowed range \[0, 1\]",
        ),
        ({"streamer.attention_rate": -0.1}, r"streamer\.attention_rate = -0\.1 is outside"),
        (
            {"owners.group_size_max": 501},
            r"owners\.group_size_max = 501 is outside the allowed range \[1, 500\]",
        ),
        ({"owners.group_size_median": 800.0}, r"owners\.group_size_median = 800\.0 is outside"),
        ({"platform.selection_strictness": 1.2}, r"platform\.selection_strictness = 1\.2"),
        (
            {"owners.count": 10, "world.consumers": 5},
            r"owners\.count = 10 is outside the allowed range \[0, world\.consumers = 5\]",
        ),
        ({"delivery.lag_min": 6, "delivery.lag_max": 3}, r"delivery\.lag_min = 6 must not exceed"),
        ({"graph.topology": "lattice"}, r"graph\.topology = 'lattice' is not allowed: choose"),
        ({"owners.commission": float("nan")}, r"owners\.commission = nan must be a finite number"),
        ({"events.defective_batch_brand": 99}, r"events\.defective_batch_brand = 99 is outside"),
    ],
)
def test_bad_values_name_the_parameter_and_range(overrides, message):
    with pytest.raises(ParameterError, match=message):
        Params().with_overrides(overrides)


def test_no_group_grows_past_wechats_cap():
    """A cap above WeChat's 500 is refused; groups built and grown stay within the cap."""
    with pytest.raises(ParameterError, match=r"owners\.group_size_max = 501 is outside"):
        Params().with_overrides({"owners.group_size_max": 501})
    from sim.world.model import CommerceModel

    p = Params.from_dict({"world": {"consumers": 3000, "days": 20}, "owners": {"count": 5}})
    model = CommerceModel(p.with_overrides({"owners.group_size_median": 400.0}))
    for _ in range(20):
        model.step()
    assert model.owners.group_size.max() <= GROUP_SIZE_CAP


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(
        ParameterError, match=r"unknown key 'owners\.open_rat' \(did you mean 'open_rate'\?\)"
    ):
        Params.from_dict({"owners": {"open_rat": 0.3}})
    with pytest.raises(
        ParameterError, match=r"unknown key 'streamr' \(did you mean 'streamer'\?\)"
    ):
        Params.from_dict({"streamr": {}})


def test_wrong_type_is_an_error():
    with pytest.raises(
        ParameterError, match=r"world\.days = 'ten' has the wrong type: expected int"
    ):
        Params.from_dict({"world": {"days": "ten"}})
    with pytest.raises(
        ParameterError, match=r"channels\.owners = 1 has the wrong type: expected bool"
    ):
        Params.from_dict({"channels": {"owners": 1}})


def test_integers_are_accepted_for_floats_and_whole_floats_for_ints():
    p = Params.from_dict({"owners": {"open_rate": 1}, "world": {"days": 20.0}})
    assert p.owners.open_rate == 1.0 and isinstance(p.owners.open_rate, float)
    assert p.world.days == 20 and isinstance(p.world.days, int)


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[owners]\nopen_rate = 2.0\n")
    with pytest.raises(ParameterError, match=r"bad\.toml: owners\.open_rate = 2\.0 is outside"):
        Params.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[owners\n")
    with pytest.raises(ParameterError, match=r"broken\.toml: not valid TOML"):
        Params.from_toml(broken)
    with pytest.raises(ParameterError, match=r"missing\.toml: file not found"):
        Params.from_toml(tmp_path / "missing.toml")


def test_toml_round_trip(tmp_path):
    f = tmp_path / "ok.toml"
    f.write_text("seed = 7\n[world]\nconsumers = 3000\n[hype]\nlive = 1.5\n")
    p = Params.from_toml(f)
    assert (p.seed, p.world.consumers, p.hype.live) == (7, 3000, 1.5)
    assert Params.from_dict(p.to_dict()) == p


def test_params_are_immutable():
    p = Params()
    with pytest.raises(AttributeError):
        p.world.days = 3  # type: ignore[misc]
