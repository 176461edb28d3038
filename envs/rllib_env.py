"""RLlib adapters: the only module of `envs` that imports Ray.

- `aigc-edge-vector`: the vectorised core as a gymnasium VectorEnv. Use it with
  `.env_runners(gym_env_vectorize_mode=gymnasium.VectorizeMode.VECTOR_ENTRY_POINT,
  num_envs_per_env_runner=n)`; RLlib passes `num_envs` in the env config.
- `aigc-edge-multiagent`: a turn-based MultiAgentEnv, one agent per deciding entity (the BS of
  `dedgeai` in its faithful form). Only the agent whose task is next gets an observation; the
  reward of a decision is paid to the agent that made it at once.

env_config keys: `scenario` (preset name or YAML path, default dedgeai), `overrides` (list of
`key=value`), `num_envs`, `seed`.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.tune.registry import register_env

from envs.gym_env import VectorEdgeEnv, observation_space
from envs.scenarios import load_scenario, make_core

VECTOR_ENV = "aigc-edge-vector"
MULTI_AGENT_ENV = "aigc-edge-multiagent"


def _seed(env_config) -> int | None:
    seed = env_config.get("seed")
    if seed is None:
        return None
    # Each env runner gets its own stream: same base seed, same run.
    return int(seed) + 1000 * int(getattr(env_config, "worker_index", 0))


def make_vector_env(env_config) -> VectorEdgeEnv:
    config = load_scenario(env_config.get("scenario", "dedgeai"), env_config.get("overrides", ()))
    return VectorEdgeEnv(config, num_envs=int(env_config.get("num_envs", 1)), seed=_seed(env_config))


def agent_id(index: int) -> str:
    return f"bs{index}"


class TurnBasedEdgeEnv(MultiAgentEnv):
    """One network; each task is decided by the agent that owns it (`acting_agent()` of the core)."""

    def __init__(self, env_config=None):
        super().__init__()
        env_config = env_config or {}
        self.config = load_scenario(env_config.get("scenario", "dedgeai"), env_config.get("overrides", ()))
        self.core = make_core(self.config, num_envs=1, seed=_seed(env_config))
        self.agents = self.possible_agents = [agent_id(i) for i in range(self.core.num_agents)]
        single_obs = observation_space(self.core)
        single_act = gym.spaces.Discrete(self.core.encoding.n)
        self.observation_spaces = {a: single_obs for a in self.agents}
        self.action_spaces = {a: single_act for a in self.agents}
        self._action = np.zeros(1, dtype=np.int64)

    def _current(self) -> tuple[str, dict]:
        agent = agent_id(int(self.core.acting_agent()[0]))
        return agent, {agent: self.core.observe()[0]}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.core.seed(seed)
        self.core.reset()
        agent, obs = self._current()
        return obs, {agent: {"context_key": int(self.core.context_key()[0])}}

    def step(self, action_dict):
        acting = agent_id(int(self.core.acting_agent()[0]))
        if acting not in action_dict:
            raise ValueError(f"it is {acting}'s turn, got actions for {sorted(action_dict)}")
        self._action[0] = action_dict[acting]
        result = self.core.step(self._action)
        done = bool(result.done[0])
        agent, obs = self._current()
        if done:  # every agent gets a last observation to bootstrap from
            obs = {a: obs[agent] for a in self.agents}
        rewards = {acting: float(result.reward[0])}
        infos = {agent: {"context_key": int(self.core.context_key()[0])}}
        return obs, rewards, {"__all__": False}, {"__all__": done}, infos


def register_rllib_envs() -> None:
    register_env(VECTOR_ENV, make_vector_env)
    register_env(MULTI_AGENT_ENV, lambda env_config: TurnBasedEdgeEnv(env_config))
