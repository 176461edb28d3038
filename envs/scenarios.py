"""Scenario names, presets and construction: `load_scenario("collab-exit/urban")` -> config -> core.

A scenario is a preset name (a YAML file under envs/presets/, e.g. `dedgeai`,
`collab-exit/rural`) or a path to a user's YAML file. Its `scenario` key picks the config schema.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

from envs.collab_exit import CollabExitConfig, CollabExitCore
from envs.config import ConfigError, apply_overrides, read_yaml, validate
from envs.core import VectorCore
from envs.dedgeai import DedgeaiConfig, DedgeaiCore
from envs.mec_device import MecDeviceConfig, MecDeviceCore
from envs.serve_sim import ServeSimConfig, ServeSimCore

PRESETS_DIR = Path(__file__).resolve().parent / "presets"

ScenarioConfig = Union[DedgeaiConfig, CollabExitConfig, MecDeviceConfig, ServeSimConfig]

SCHEMAS: dict[str, tuple[type, type]] = {
    "dedgeai": (DedgeaiConfig, DedgeaiCore),
    "collab-exit": (CollabExitConfig, CollabExitCore),
    "mec-device": (MecDeviceConfig, MecDeviceCore),
    "serve-sim": (ServeSimConfig, ServeSimCore),
}


def preset_names() -> list[str]:
    return sorted(str(p.relative_to(PRESETS_DIR).with_suffix("")) for p in PRESETS_DIR.rglob("*.yaml"))


DEFAULT_FAMILY = {"collab-exit": "urban"}  # `collab-exit` alone means its default family


def _preset_path(name: str) -> Path | None:
    name = f"{name}/{DEFAULT_FAMILY[name]}" if name in DEFAULT_FAMILY else name
    path = PRESETS_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def load_scenario(name_or_path: str | Path, overrides: Iterable[str] = ()) -> ScenarioConfig:
    """A validated scenario config from a preset name or a YAML path, with `key=value` overrides."""
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) or Path(text).is_file() else _preset_path(text)
    if path is None:
        raise ConfigError(f"unknown scenario {text!r}: use a preset ({', '.join(preset_names())}) "
                          "or a path to a YAML file")
    data = apply_overrides(read_yaml(path), overrides)
    kind = data.get("scenario")
    if kind not in SCHEMAS:
        raise ConfigError(f"{path}: scenario must be one of {sorted(SCHEMAS)}, got {kind!r}")
    return validate(SCHEMAS[kind][0], data, source=f"scenario {text}")


def make_core(config: ScenarioConfig, num_envs: int = 1, seed: int | None = None) -> VectorCore:
    return SCHEMAS[config.scenario][1](config, num_envs=num_envs, seed=seed)


def scenario_name(config: ScenarioConfig) -> str:
    """`dedgeai`, `collab-exit/urban`, ...: how runs, models and reports name the scenario."""
    family = getattr(config, "family", None)
    return f"{config.scenario}/{family}" if family else config.scenario
