"""The algorithms by name: one list, read by the CLI's choices, the train config and Tune.

- `d2sac` (Du et al.): discrete SAC with a diffusion actor whose chain starts from N(0, I);
- `lad` (Xu et al.): the same, the chain started from the historical action probability;
- `sac-mlp`: the same discrete SAC with an MLP actor, the ablation that isolates the diffusion actor;
- `ppo`, `dqn`, `sac`: RLlib's own, with MLP models, on its stock pipelines (`policies/baselines/`).

`algorithm_config(algo, env_config, ...)` builds the RLlib AlgorithmConfig of any of them.
RLlib is imported only there, so the names and options load fast (the CLI's `--help`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from envs.config import ConfigError, format_validation_error, validate_nested
from policies.options import DQNOptions, ModelOptions, PPOOptions, RLlibSACOptions, SACOptions


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    summary: str
    options: type[BaseModel]        # the model of `TrainConfig.training` for this algorithm
    actor: str | None = None        # ours: diffusion | mlp (None: RLlib's own)
    start: str | None = None        # ours: noise | prior

    @property
    def ours(self) -> bool:
        return self.actor is not None


ALGORITHMS: dict[str, AlgorithmSpec] = {spec.name: spec for spec in (
    AlgorithmSpec("lad", "LAD-TS: diffusion actor started from the historical action probability",
                  SACOptions, "diffusion", "prior"),
    AlgorithmSpec("d2sac", "D2SAC: diffusion actor started from N(0, I)", SACOptions, "diffusion", "noise"),
    AlgorithmSpec("sac-mlp", "our discrete SAC with an MLP actor (the ablation)", SACOptions, "mlp", "noise"),
    AlgorithmSpec("sac", "RLlib's SAC, MLP models", RLlibSACOptions),
    AlgorithmSpec("ppo", "RLlib's PPO, MLP models", PPOOptions),
    AlgorithmSpec("dqn", "RLlib's DQN (double, dueling), MLP models", DQNOptions),
)}
ALGO_NAMES = tuple(ALGORITHMS)


def algorithm(name: str) -> AlgorithmSpec:
    if name not in ALGORITHMS:
        raise ConfigError(f"algo: unknown algorithm {name!r}; choose one of {', '.join(ALGO_NAMES)}")
    return ALGORITHMS[name]


def training_options(algo: str, training: BaseModel | dict | None) -> BaseModel:
    """`training` (a dict, or already the options model) validated as `algo`'s options."""
    return _checked(algorithm(algo).options, training, "training", f"training options of {algo}")


def _checked(model: type[BaseModel], value, section: str, source: str) -> BaseModel:
    try:
        return validate_nested(model, value, (section,))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model, prefix=(section,))) from None


def algorithm_config(algo: str, env_config: dict, *, num_envs: int = 10, num_env_runners: int = 0,
                     seed: int | None = None, training: BaseModel | dict | None = None,
                     model: ModelOptions | dict | None = None):
    """The AlgorithmConfig of `algo` on the scenario of `env_config` (scenario, overrides, seed)."""
    from envs.scenarios import load_scenario, make_core

    spec = algorithm(algo)
    options = training_options(algo, training)
    scen = load_scenario(env_config["scenario"], env_config.get("overrides", ()))
    core = make_core(scen, 1, 0)
    multi_agent = getattr(scen, "form", "shared") == "multi-agent"
    if not spec.ours:
        if model:
            raise ConfigError(f"model options are for lad, d2sac and sac-mlp; {algo} uses RLlib's MLP models")
        from policies.baselines.config import rllib_baseline_config

        return fail_on_lost_runners(rllib_baseline_config(
            algo, env_config, num_envs=num_envs, num_env_runners=num_env_runners, seed=seed, options=options,
            agents=core.num_agents if multi_agent else None, episode_decisions=core.mean_episode_decisions()))
    from policies.extensions import build_extensions
    from policies.sac.algorithm import DiffusionSAC
    from policies.sac.config import per_action_columns_for

    model = _checked(ModelOptions, model, "model", "model options")
    for extension in build_extensions(options):
        extension.check(scen)               # a bad option fails here, not in a runner
    n_agents = core.num_agents if multi_agent else 1
    cfg = (DiffusionSAC.get_default_config()
           .environment(env_config=dict(env_config))
           .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs,
                        num_cpus_per_env_runner=0.5)
           .learners(num_learners=0)
           .debugging(seed=seed)
           .training(options=options, actor_kind=spec.actor, start=spec.start))
    cfg.validate()
    columns = per_action_columns_for(model, core.layout, n_agents, core.encoding.n)
    return fail_on_lost_runners(cfg.rl_module_for(model, n_agents=n_agents, obs_scale=core.layout.scales(),
                                                  per_action_columns=columns))


def fail_on_lost_runners(cfg):
    """A lost env runner (its node gone) fails the run instead of RLlib restarting it: a restarted
    runner would start its episodes afresh (the run's episode count and numbering would no
    longer hold), and with no node to place it on RLlib waits for ever. The run's last
    checkpoint stays, and `--resume` continues exactly (`aigc-edge submit --retries` does it)."""
    return cfg.fault_tolerance(restart_failed_env_runners=False)


def describe_options(options_class: type[BaseModel], prefix: str) -> list[str]:
    """One line per field (nested models expanded): `prefix.name  default  range  description`."""
    lines: list[str] = []
    for name, info in options_class.model_fields.items():
        key = f"{prefix}.{name}"
        nested = _nested_model(info.annotation)
        if nested is not None:
            lines.append(f"  {key}.*  (absent = off) {info.description or ''}")
            lines += describe_options(nested, key)
            continue
        default = "required" if info.is_required() else f"default {info.default!r}"
        bounds = _bounds(info)
        lines.append(f"  {key}  {default}{', ' + bounds if bounds else ''}  {info.description or ''}".rstrip())
    return lines


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _bounds(info) -> str:
    parts = []
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value:g}")
    if get_origin(info.annotation) is Literal:
        parts.append(" | ".join(map(str, get_args(info.annotation))))
    return ", ".join(parts)
