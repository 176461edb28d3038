"""The RLlib adapters under real RLlib: one PPO iteration on each (one Ray session for the module)."""
import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from envs.rllib_env import MULTI_AGENT_ENV, VECTOR_ENV, TurnBasedEdgeEnv, register_rllib_envs  # noqa: E402

pytestmark = pytest.mark.slow
SMALL = ["slots=3", "n_bs=4", "max_tasks=5"]


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_rllib_envs()
    yield
    ray.shutdown()


def test_turn_based_env_gives_the_turn_to_the_owning_bs():
    env = TurnBasedEdgeEnv({"scenario": "dedgeai", "overrides": SMALL + ["form=multi-agent"], "seed": 0})
    obs, _ = env.reset()
    agents_seen, done = set(), False
    while not done:
        (agent,) = obs
        assert obs[agent].shape == (env.core.layout.dim,) and agent == f"bs{env.core.bs[0]}"
        agents_seen.add(agent)
        obs, rewards, _, truncated, _ = env.step({agent: 0})
        assert list(rewards) == [agent] and rewards[agent] < 0
        done = truncated["__all__"]
    assert agents_seen == {f"bs{i}" for i in range(4)}


def _ppo_config():
    from ray.rllib.algorithms.ppo import PPOConfig

    return (PPOConfig()
            .env_runners(num_env_runners=0, rollout_fragment_length="auto")
            .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1)
            .learners(num_learners=0))


def test_ppo_trains_on_the_vector_env():
    config = (_ppo_config()
              .environment(VECTOR_ENV, env_config={"scenario": "dedgeai", "overrides": SMALL, "seed": 0})
              .env_runners(num_envs_per_env_runner=4,
                           gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT))
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 128
    finally:
        algo.stop()


def test_ppo_trains_on_the_turn_based_env_one_policy_per_bs():
    agents = [f"bs{i}" for i in range(4)]
    config = (_ppo_config()
              .environment(MULTI_AGENT_ENV, env_config={"scenario": "dedgeai",
                                                        "overrides": SMALL + ["form=multi-agent"], "seed": 0})
              .multi_agent(policies=set(agents), policy_mapping_fn=lambda agent_id, *a, **k: agent_id))
    algo = config.build_algo()
    try:
        result = algo.train()
        trained = set(result["learners"]) - {"__all_modules__"}
        assert trained == set(agents)
        assert np.isfinite(result["env_runners"]["agent_episode_returns_mean"]["bs0"])
    finally:
        algo.stop()
