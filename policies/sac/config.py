"""The AlgorithmConfig of d2sac, lad and sac-mlp: typed options in, RLlib's pieces wired."""
from __future__ import annotations

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from envs.config import ConfigError
from policies.options import ModelOptions, SACOptions, module_config
from policies.sac.learner import DiffusionSACLearner
from policies.sac.module import DiffusionSACModule
from policies.sac.runner import EdgeDecisionRunner


class DiffusionSACConfig(AlgorithmConfig):
    """Discrete SAC with a diffusion (or MLP) actor over the vectorised edge simulator."""

    def __init__(self, algo_class=None):
        # `DiffusionSAC.get_default_config()` passes itself (policies/sac/algorithm.py).
        super().__init__(algo_class=algo_class)
        self.env_runner_cls = EdgeDecisionRunner
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 10
        self.options = SACOptions()
        self.actor_kind = "diffusion"            # diffusion | mlp
        self.start = "noise"                     # noise (D2SAC) | prior (LAD)
        self.episode_budget = None               # per runner: episodes to start, then idle (None: no end)
        self._apply(self.options)

    def training(self, *, options: SACOptions | None = None, actor_kind: str | None = None,
                 start: str | None = None, episode_budget: int | None = None, **kwargs):
        """RLlib's `training()` plus ours: the typed `options`, the actor, the chain start and the
        episode budget per runner."""
        if options is not None:
            self.options = options
            self._apply(options)
        if actor_kind is not None:
            self.actor_kind = actor_kind
        if start is not None:
            self.start = start
        if episode_budget is not None:
            self.episode_budget = episode_budget
        return super().training(**kwargs)

    def _apply(self, options: SACOptions) -> None:
        # The fields RLlib's own Learner reads (gradient clipping) stay where it reads them.
        self.gamma, self.grad_clip, self.grad_clip_by = options.gamma, options.grad_clip, "global_norm"

    @property
    def rollout_decisions(self) -> int:
        return self.options.rollout_decisions

    def rl_module_for(self, model: ModelOptions, *, n_agents: int, obs_scale, per_action_columns) -> "DiffusionSACConfig":
        return self.rl_module(rl_module_spec=RLModuleSpec(
            module_class=DiffusionSACModule,
            model_config=module_config(model, actor=self.actor_kind, start=self.start, n_agents=n_agents,
                                       obs_scale=[float(x) for x in obs_scale],
                                       per_action_columns=per_action_columns)))

    def get_default_rl_module_spec(self):
        return RLModuleSpec(module_class=DiffusionSACModule)

    def get_default_learner_class(self):
        return DiffusionSACLearner

    def validate(self) -> None:
        # The stock validation expects an env; ours is built by the runner from env_config.
        if "scenario" not in self.env_config:
            raise ConfigError("env_config needs `scenario`")


def per_action_columns_for(model: ModelOptions, layout, n_agents: int, n_actions: int) -> list[list[int]] | None:
    """The observation columns a per-action network reads (None for flat networks), checked
    against the scenario: one column per action in every per-action field, the shared form."""
    if model.network == "flat":
        return None
    columns = layout.per_action_columns()
    if not columns:
        raise ConfigError(f"model.network 'per-action' needs per-action observation fields; the "
                          f"{layout.scenario} layout has none (it scores actions that are not one per field column)")
    sizes = sorted({len(c) for c in columns})
    if sizes != [n_actions]:
        raise ConfigError(f"model.network 'per-action' needs one column per action in every per-action field; "
                          f"the {layout.scenario} layout's fields have {sizes}, the scenario {n_actions} actions")
    if n_agents != 1:
        raise ConfigError("model.network 'per-action' shares one weight set: it needs the shared form "
                          f"(this scenario has {n_agents} independent agents)")
    return columns
