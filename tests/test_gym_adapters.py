"""Gymnasium adapters: env_checker passes everywhere, determinism, next-step autoreset."""
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.gym_env import EdgeEnv, VectorEdgeEnv
from envs.scenarios import load_scenario, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_env_checker_passes(name, profile_override):
    config = load_scenario(name, [] if name.startswith("dedgeai") else profile_override)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")  # queues are unbounded by design
        check_env(EdgeEnv(config), skip_render_check=True)


@pytest.mark.parametrize("name", ["dedgeai", "collab-exit/degraded", "mec-device"])
def test_same_seed_same_trajectory(name, profile_override):
    config = load_scenario(name, [] if name == "dedgeai" else profile_override)

    def rollout(seed):
        env = EdgeEnv(config)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [obs]
        for _ in range(500):
            obs, reward, _, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            trace.append(np.append(obs, reward))
            if truncated:
                env.reset()
        return np.concatenate(trace)

    np.testing.assert_array_equal(rollout(11), rollout(11))
    assert not np.array_equal(rollout(11), rollout(12))


def test_vector_env_next_step_autoreset():
    config = load_scenario("dedgeai", ["slots=2", "episode_stream=generator"])
    env = VectorEdgeEnv(config, num_envs=3, seed=0)
    env.reset(seed=0)
    lengths = np.zeros(3, dtype=int)
    restarted = np.zeros(3, dtype=bool)
    for _ in range(5000):
        obs, reward, terminated, truncated, info = env.step(np.zeros(3, dtype=np.int64))
        assert not terminated.any()
        restarting = env._needs_reset.copy()
        lengths += ~restarted
        if truncated.any():
            final = truncated.copy()
            obs2, reward2, _, truncated2, _ = env.step(np.zeros(3, dtype=np.int64))
            # the copies that had finished start over: reward 0, not truncated, a fresh queue
            assert (reward2[final] == 0).all() and not truncated2[final].any()
            assert (env.core.queue[final] == 0).all()
            break
    else:
        pytest.fail("no episode finished")
    assert restarting.any()


def test_vector_infos_carry_delay_and_context():
    env = VectorEdgeEnv(load_scenario("dedgeai"), num_envs=2, seed=0)
    env.reset()
    _, reward, _, _, info = env.step(np.array([0, 1]))
    np.testing.assert_allclose(-reward, info["delay_s"])
    assert info["context_key"].shape == (2,)
