"""Every policy by name: the one registry `aigc-edge evaluate`, demonstrations, the serving
router and the benchmarks read.

A policy spec is one of
- a heuristic: `greedy`, `least-loaded`, `round-robin`, `random`, `local`, `fixed-exit:<plan>`;
- a reference rule of dedgeai: `size-split:THETA[:COVER]`, `capacity-proportional`;
- a trained policy: a policy artifact folder, the run folder `aigc-edge train` wrote, or an
  MLflow URI (`models:/aigc-edge-policy-<scenario>@champion`, `runs:/<id>/policy`); with
  `#sample` appended it draws from pi(.|s) instead of taking the argmax.
"""
from __future__ import annotations

from pathlib import Path

from envs.config import ConfigError
from envs.dedgeai import DedgeaiConfig
from envs.scenarios import ScenarioConfig, make_core
from policies.base import Policy
from policies.heuristics import HEURISTICS, is_heuristic, make_heuristic
from policies.reference_rules import CAPACITY_PROPORTIONAL, SIZE_SPLIT, CapacityProportional, SizeSplit

MLFLOW_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
RULES = (f"{SIZE_SPLIT}:THETA[:COVER]", CAPACITY_PROPORTIONAL)
POLICY_SPECS = (f"a heuristic ({', '.join(HEURISTICS)}), a reference rule of dedgeai ({', '.join(RULES)}), "
                "a policy artifact or training-run folder, or an MLflow URI (models:/NAME@ALIAS, runs:/ID/policy); "
                "append #sample to draw from a trained policy instead of its argmax")


def make_policy(spec: str, config: ScenarioConfig, seed: int | None = None, field: str = "policy") -> Policy:
    """The Policy `spec` names, for scenario `config`; a ConfigError naming `field` otherwise."""
    spec = str(spec)
    if is_heuristic(spec):
        return make_heuristic(spec, make_core(config, num_envs=1).encoding, seed)
    name, _, args = spec.partition(":")
    if name in (SIZE_SPLIT, CAPACITY_PROPORTIONAL):
        return _reference_rule(name, args, config, seed, field)
    location = spec.split("#", 1)[0]
    if not (location.startswith(MLFLOW_URI_SCHEMES) or Path(location).exists()):
        raise ConfigError(f"{field} {spec!r} is not {POLICY_SPECS}")
    from policies.artifact import load_policy  # trained agents need torch; heuristics do not

    return load_policy(spec, config)


def _reference_rule(name: str, args: str, config: ScenarioConfig, seed: int | None, field: str) -> Policy:
    if not isinstance(config, DedgeaiConfig):
        raise ConfigError(f"{field} {name!r}: the reference rules are defined for dedgeai only")
    if name == CAPACITY_PROPORTIONAL:
        if args:
            raise ConfigError(f"{field} {CAPACITY_PROPORTIONAL!r} takes no arguments, got {args!r}")
        return CapacityProportional(config, 0 if seed is None else seed)
    try:
        numbers = [float(x) for x in args.split(":")] if args else []
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise ConfigError(f"{field} {name}:{args} must look like {SIZE_SPLIT}:THETA[:COVER], e.g. "
                          f"{SIZE_SPLIT}:1.75:0.9 (THETA in Gcycles > 0, COVER > 0)")
    try:
        return SizeSplit(config, *numbers)
    except ValueError as e:
        raise ConfigError(f"{field} {name}:{args}: {e}") from e
