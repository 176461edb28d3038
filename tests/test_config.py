"""Configs: presets load, overrides apply, bad values are refused with the field named."""
import json

import pytest

from envs.config import ConfigError, apply_overrides, parse_override
from envs.profile import load_profile
from envs.scenarios import load_scenario, preset_names
from tests.conftest import FIXTURE_PROFILE


def test_every_preset_loads(profile_override):
    for name in preset_names():
        extra = [] if name.startswith("dedgeai") else profile_override
        assert load_scenario(name, extra).scenario in name


def test_family_alias_and_yaml_path(tmp_path):
    assert load_scenario("collab-exit").family == "urban"
    path = tmp_path / "mine.yaml"
    path.write_text("scenario: collab-exit\nfamily: mine\nedges:\n  n_edges: 6\n")
    config = load_scenario(str(path))
    assert config.edges.n_edges == 6 and config.radio.bandwidth_mhz == 20.0


def test_dotted_overrides_parse_yaml_values():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert apply_overrides({"a": {"c": 1}}, ["a.b=true"]) == {"a": {"c": 1, "b": True}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("novalue")


def test_exponent_numbers_are_floats_in_overrides_and_files(tmp_path):
    """Plain YAML 1.1 reads `1e-9` as the string '1e-9'; a learning rate written so must be a number."""
    from envs.config import read_yaml

    assert parse_override("training.lr=1e-9") == ("training.lr", 1e-9)
    assert parse_override("x=[2E3, -5e-1, 1.5e+2]")[1] == [2000.0, -0.5, 150.0]
    assert parse_override("x=1e")[1] == "1e" and parse_override("x=7")[1] == 7
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  actor_lr: 3e-4\n")
    assert read_yaml(path) == {"training": {"actor_lr": 3e-4}}


@pytest.mark.parametrize("override, message", [
    ("n_bs=-1", "n_bs"),
    ("bogus=1", "bogus: unknown key"),
    ("input_mbit=[5, 2]", "range is empty"),
    ("capacity_gcycles=[0, 5]", "capacity_gcycles must be > 0"),
    ("mode=sideways", "mode"),
])
def test_bad_dedgeai_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_scenario("dedgeai", [override])


@pytest.mark.parametrize("override, message", [
    ("tasks.arrival_rate=-0.5", "tasks.arrival_rate"),
    ("edges.always_down=4", "always_down must be < n_edges"),
    ("radio.distance_km=[0, 1]", "distance_km must be > 0"),
    ("plans=[warp]", "plan 'warp' is not in the profile"),
])
def test_bad_collab_values_name_the_field(override, message, profile_override):
    from envs.scenarios import make_core

    with pytest.raises(ConfigError, match=message):
        make_core(load_scenario("collab-exit/urban", profile_override + [override]))


def test_unknown_scenario_lists_presets():
    with pytest.raises(ConfigError, match="dedgeai"):
        load_scenario("nowhere")


def test_profile_is_validated(tmp_path):
    good = json.loads(FIXTURE_PROFILE.read_text())
    assert load_profile(FIXTURE_PROFILE).plan("full").relative_flops == 1.0
    bad = dict(good, schema_version=99)
    (tmp_path / "v.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="schema_version"):
        load_profile(tmp_path / "v.json")
    no_full = dict(good, plans=[p for p in good["plans"] if p["name"] != "full"])
    (tmp_path / "f.json").write_text(json.dumps(no_full))
    with pytest.raises(ConfigError, match="must include the plan 'full'"):
        load_profile(tmp_path / "f.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_profile(tmp_path / "c.json")
