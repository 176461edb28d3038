"""Families: the edge networks a policy is trained on and transferred to.

A family is
- a preset of a scenario: `collab-exit/urban`, `collab-exit/peak` (or just `peak`: a family of
  collab-exit), `dedgeai`, ...;
- a scenario YAML of the user's own (`my-network.yaml`, schema as `envs/presets/`);
- `serve-sim:TOPOLOGY.yaml`: the serve-sim scenario of a serving topology file (`envs/topology.py`),
  e.g. `serve-sim:serving/topologies/node-slowed.yaml`.
Families of one transfer must share the observation layout and the action encoding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from envs.config import ConfigError
from envs.scenarios import load_scenario, preset_names, scenario_name

SERVE_SIM_PREFIX = "serve-sim:"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Family:
    spec: str                       # as the user wrote it
    scenario: str                   # what TrainConfig.scenario takes: a preset name or a YAML path
    overrides: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        """A name for folders and runs."""
        if self.spec.startswith(SERVE_SIM_PREFIX):
            text = "serve-sim-" + Path(self.spec[len(SERVE_SIM_PREFIX):]).stem
        elif self.spec.endswith((".yaml", ".yml")):
            text = Path(self.spec).stem
        else:
            text = self.scenario
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")

    def config(self):
        return load_scenario(self.scenario, self.overrides)

    @property
    def name(self) -> str:
        """How runs and tables name it: the scenario's name, or the topology / YAML file's stem."""
        return self.slug if self.spec.startswith(SERVE_SIM_PREFIX) or self.spec.endswith((".yaml", ".yml")) \
            else scenario_name(self.config())


def _absolute(path: str, field_name: str) -> str:
    for candidate in (Path(path).expanduser(), PROJECT_ROOT / path):
        if candidate.is_file():
            return str(candidate.resolve())
    raise ConfigError(f"{field_name}: no file {path!r}")


def resolve_family(spec: str, field_name: str = "family") -> Family:
    """The Family `spec` names; a ConfigError naming `field_name` and the choices otherwise."""
    spec = str(spec).strip()
    if spec.startswith(SERVE_SIM_PREFIX):
        topology = _absolute(spec[len(SERVE_SIM_PREFIX):], field_name)
        family = Family(spec, "serve-sim", (f"topology={topology}",))
    elif spec.endswith((".yaml", ".yml")):
        family = Family(spec, _absolute(spec, field_name))
    elif spec in preset_names() or spec in ("collab-exit",):
        family = Family(spec, spec)
    elif f"collab-exit/{spec}" in preset_names():
        family = Family(spec, f"collab-exit/{spec}")
    else:
        raise ConfigError(f"{field_name} {spec!r}: use a preset ({', '.join(preset_names())}), a family of "
                          f"collab-exit (urban, rural, peak, degraded), a scenario YAML file, or "
                          f"{SERVE_SIM_PREFIX}TOPOLOGY.yaml")
    try:
        family.config()
    except ConfigError as e:
        raise ConfigError(f"{field_name} {spec!r}: {e}") from e
    return family
