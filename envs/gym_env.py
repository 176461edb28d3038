"""Gymnasium adapters on the vectorised core: one env (`EdgeEnv`) and a vector env (`VectorEdgeEnv`).

Episodes end by time (a fixed number of slots), so they are `truncated`, never `terminated`:
the public LAD-TS code stores no done flag either.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from envs.core import StepResult, VectorCore
from envs.scenarios import ScenarioConfig, load_scenario, make_core


def _config(scenario: ScenarioConfig | str) -> ScenarioConfig:
    return load_scenario(scenario) if isinstance(scenario, str) else scenario


def observation_space(core: VectorCore) -> spaces.Box:
    # Every field is a size, a work amount, a rate, a flag or a quality: never negative.
    return spaces.Box(low=0.0, high=np.inf, shape=(core.layout.dim,), dtype=np.float32)


def step_infos(core: VectorCore, result: StepResult) -> dict[str, np.ndarray]:
    """Per-copy facts of the decision just made, plus the context key of the next decision."""
    return {"delay_s": result.delay_s, "quality": result.quality,
            "deadline_missed": result.deadline_missed, "context_key": core.context_key()}


class EdgeEnv(gym.Env):
    """One simulated edge network. `scenario` is a config or a preset name/YAML path."""

    metadata = {"render_modes": []}

    def __init__(self, scenario: ScenarioConfig | str = "dedgeai", seed: int | None = None):
        self.config = _config(scenario)
        self.core = make_core(self.config, num_envs=1, seed=seed)
        self.observation_space = observation_space(self.core)
        self.action_space = spaces.Discrete(self.core.encoding.n)
        self._action = np.zeros(1, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.seed(seed)
        self.core.reset()
        return self.core.observe()[0], {"context_key": int(self.core.context_key()[0])}

    def step(self, action):
        self._action[0] = action
        result = self.core.step(self._action)
        info = {"delay_s": float(result.delay_s[0]), "context_key": int(self.core.context_key()[0])}
        if self.core.has_quality:
            info["quality"] = float(result.quality[0])
        if self.core.has_deadlines:
            info["deadline_missed"] = bool(result.deadline_missed[0])
        return self.core.observe()[0], float(result.reward[0]), False, bool(result.done[0]), info


class VectorEdgeEnv(gym.vector.VectorEnv):
    """B simulated networks stepped as one NumPy batch, with next-step autoreset.

    A copy that finishes returns its last observation with `truncated=True`; on the following
    call it starts a new episode, returns that episode's first observation with reward 0, and
    ignores its action (gymnasium's NEXT_STEP mode, which RLlib's env runner expects).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, scenario: ScenarioConfig | str = "dedgeai", num_envs: int = 1,
                 seed: int | None = None):
        self.config = _config(scenario)
        self.core = make_core(self.config, num_envs=num_envs, seed=seed)
        self.num_envs = num_envs
        self.single_observation_space = observation_space(self.core)
        self.single_action_space = spaces.Discrete(self.core.encoding.n)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.core.seed(seed)
        self.core.reset()
        self._needs_reset[:] = False
        return self.core.observe(), {"context_key": self.core.context_key()}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64)
        restarting = self._needs_reset.copy()
        if restarting.any():
            self.core.reset(restarting)
            result = self.core.step(actions, active=~restarting)
        else:
            result = self.core.step(actions)
        self._needs_reset = result.done.copy()
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = step_infos(self.core, result)
        return self.core.observe(), result.reward, terminated, result.done, infos
