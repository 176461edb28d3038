"""RLlib's own PPO, DQN and SAC with MLP models: the learned baselines, on RLlib's stock pipelines.

One policy on the gymnasium vector env of the scenario, or (the faithful form) one independent
policy per base station on the turn-based MultiAgentEnv. Their options are `policies/options.py`'s
`PPOOptions`, `DQNOptions`, `RLlibSACOptions`: the fields we set, plus any other keyword of RLlib's
`AlgorithmConfig.training()`, checked here against RLlib's own signature.
"""
from __future__ import annotations

import difflib
import inspect

import gymnasium as gym
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.sac import SACConfig
from ray.rllib.connectors.env_to_module.mean_std_filter import MeanStdFilter

from envs.config import ConfigError
from envs.rllib_env import MULTI_AGENT_ENV, VECTOR_ENV, agent_id, register_rllib_envs
from policies.baselines.replay import REPLACED_BUFFER, ResumableDQN, ResumableSAC, TurnBasedDQN, TurnBasedSAC
from policies.options import RLlibOptions


def training_options(config_class: type) -> set[str]:
    """The keyword options `config_class().training()` accepts (its own and every base's)."""
    names: set[str] = set()
    for cls in config_class.__mro__:
        if "training" in cls.__dict__:
            names |= {p.name for p in inspect.signature(cls.__dict__["training"]).parameters.values()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return names


def check_training_options(algo: str, config_class: type, training: dict) -> None:
    known = training_options(config_class)
    for key in training:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"training.{key} is not a training option of {algo}{hint}; "
                              f"options: {', '.join(sorted(known))}")


# RLlib's DQN/SAC replay, in decisions (all policies together in the faithful form). RLlib's
# episode buffers take ~7 KB per stored decision here: a buffer holding a whole 60-episode run
# (1.8M decisions) does not fit in memory.
REPLAY_CAPACITY = 200_000
# The faithful form's buffer drops an episode it evicts while it still runs, with the rest of
# it (policies/baselines/replay.py): hold this many of every env's episodes so that it rarely does.
RUNNING_EPISODES_HELD = 1.5


def rllib_baseline_config(algo: str, env_config: dict, *, num_envs: int, num_env_runners: int,
                          seed: int | None, options: RLlibOptions, agents: int | None = None,
                          episode_decisions: float = 0.0):
    """RLlib's own PPO / DQN / SAC with MLP models: one policy on the gymnasium vector env of the
    scenario, or (`agents`: the faithful form) one independent policy per base station on the
    turn-based MultiAgentEnv, `num_envs` of them per runner (`episode_decisions`: the mean
    decisions of an episode, which size that form's buffer)."""
    register_rllib_envs()
    multi = agents is not None
    config_class = {"ppo": PPOConfig, "dqn": DQNConfig, "sac": SACConfig}[algo]
    training = options.model_dump()
    check_training_options(algo, config_class, training)
    # RLlib's DQN and SAC, fixed to resume (both forms) and to evict on the turn-based env.
    replaying = {"dqn": (ResumableDQN, TurnBasedDQN), "sac": (ResumableSAC, TurnBasedSAC)}
    base = config_class(algo_class=replaying[algo][multi]) if algo in replaying else config_class()
    cfg = (base.environment(env=MULTI_AGENT_ENV if multi else VECTOR_ENV, env_config=dict(env_config))
           .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs,
                        num_cpus_per_env_runner=0.5,
                        # Queues grow to hundreds of Gcycles: standardise observations online.
                        env_to_module_connector=lambda env=None, spaces=None, device=None:
                        MeanStdFilter(multi_agent=multi))
           .learners(num_learners=0)
           .debugging(seed=seed))
    if multi:
        ids = [agent_id(i) for i in range(agents)]
        cfg = cfg.multi_agent(policies=set(ids), policy_mapping_fn=lambda aid, *args, **kwargs: aid)
    else:
        cfg = cfg.env_runners(gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT)
    # The multi-agent prioritized buffer has no default importance exponent (beta): give it the
    # single-agent buffer's. RLlib 2.60's breaks at its first eviction on the turn-based env;
    # the faithful form's DQN and SAC use a fixed subclass (policies/baselines/replay.py).
    replay = {"type": "PrioritizedEpisodeReplayBuffer", "capacity": REPLAY_CAPACITY}
    if multi:
        held = RUNNING_EPISODES_HELD * num_envs * max(num_env_runners, 1) * episode_decisions
        replay.update(type=REPLACED_BUFFER, alpha=1.0, beta=0.0, capacity=max(REPLAY_CAPACITY, int(held)))
    if algo != "ppo":
        training.setdefault("replay_buffer_config", replay)
    cfg = cfg.training(**training)
    if algo in ("dqn", "sac"):
        # RLlib's default fragment (1 step per env per call) makes one train() per ~10 decisions:
        # its per-iteration overhead then dominates 1.8M decisions. 256 steps x envs per call.
        cfg = cfg.env_runners(rollout_fragment_length=256)
    if algo == "dqn":
        cfg = cfg.env_runners(explore=True).rl_module(model_config={"fcnet_hiddens": [128, 128]})
        cfg.epsilon = [(0, 1.0), (100_000, 0.02)]
    else:
        cfg = cfg.rl_module(model_config={"fcnet_hiddens": [128, 128]})
    return cfg
