"""collab-exit and mec-device: families share spaces, physics behave, greedy reads them right."""
import numpy as np
import pytest

from envs.radio import path_loss_db, shannon_rate_mbit
from envs.scenarios import load_scenario, make_core
from policies.evaluation import evaluate

FAMILIES = ["collab-exit/urban", "collab-exit/rural", "collab-exit/peak", "collab-exit/degraded"]


def test_families_share_observation_and_action_spaces(profile_override):
    cores = [make_core(load_scenario(f, profile_override), num_envs=2) for f in FAMILIES]
    assert len({c.layout for c in cores}) == 1
    assert len({c.encoding for c in cores}) == 1
    assert cores[0].encoding.targets == ("local", "edge0", "edge1", "edge2", "edge3")


def test_shannon_rate_matches_hand_computation():
    loss = path_loss_db(np.array([0.1]))  # 128.1 - 37.6 = 90.5 dB
    rate = shannon_rate_mbit(20e6, 0.2, loss, np.array([1.0 + 0j]), -174.0)
    snr = 0.2 * 10 ** (-9.05) / (10 ** (-20.4) * 20e6)
    assert rate[0] == pytest.approx(20 * np.log2(1 + snr))


def test_rural_down_edges_lose_tasks_and_greedy_avoids_them(profile_override):
    config = load_scenario("collab-exit/rural", profile_override)
    core = make_core(config, num_envs=4, seed=0)
    obs = core.observe()
    assert core.layout.field(obs, "edge_up").tolist() == [[1, 1, 0, 0]] * 4
    down = core.encoding.encode(4, 0)  # edge3, first plan
    step = core.step(np.full(4, down))
    assert (step.quality == 0).all() and step.deadline_missed.all()
    chosen_targets, _ = core.encoding.decode(np.argmax(core.network_state().immediate_rewards(), axis=1))
    assert (chosen_targets < 3).all()


def test_quality_follows_the_profile_at_the_requested_steps(profile_override):
    core = make_core(load_scenario("collab-exit/urban", profile_override), num_envs=8, seed=3)
    steps = core.layout.field(core.observe(), "steps")[:, 0].astype(int)
    plan = core.encoding.plans.index("exit1")
    result = core.step(np.full(8, core.encoding.encode(0, plan)))
    np.testing.assert_allclose(result.quality, core.quality_by_steps[plan, steps])


def test_greedy_beats_random_and_local_everywhere(profile_override):
    for name in FAMILIES + ["mec-device"]:
        config = load_scenario(name, profile_override + ["slots=20"])
        rewards = {p: evaluate(config, p, episodes=2)["mean_reward"] for p in ("greedy", "random", "local")}
        assert rewards["greedy"] > rewards["random"] and rewards["greedy"] > rewards["local"], (name, rewards)


def test_degraded_servers_fail_and_recover(profile_override):
    core = make_core(load_scenario("collab-exit/degraded", profile_override), num_envs=16, seed=0)
    seen_down, seen_recovered, prev = False, False, core.edge_up.copy()
    for _ in range(3000):
        core.step(np.zeros(16, dtype=np.int64))
        seen_down |= bool((~core.edge_up).any())
        seen_recovered |= bool((core.edge_up & ~prev).any())
        prev = core.edge_up.copy()
    assert seen_down and seen_recovered


def test_mec_sharing_slows_later_offloads_in_a_slot(profile_override):
    config = load_scenario("mec-device", profile_override + ["tasks.arrival_rate=3", "n_devices=4"])
    core = make_core(config, num_envs=1, seed=0)
    start_slot = core.slot[0]
    uploads = []
    while core.slot[0] == start_slot:
        uploads.append(int(core.layout.field(core.observe(), "uploads")[0, 0]))
        core.step(np.array([core.encoding.encode(1, 0)]))
    assert uploads[0] == 0 and uploads[-1] == len(uploads) - 1


def test_mec_split_actions_are_offered(profile_override):
    config = load_scenario("mec-device", profile_override + ["split_fractions=[0.25, 0.5]"])
    core = make_core(config)
    assert core.encoding.targets == ("local", "mec", "split25", "split50")
    assert core.has_deadlines is False and core.encoding.plans == ("full",)


@pytest.mark.parametrize("scenario", ["dedgeai-corrected", "dedgeai", "collab-exit/urban", "mec-device"])
def test_a_core_restored_from_a_snapshot_continues_exactly(scenario, profile_override):
    overrides = [] if scenario.startswith("dedgeai") else profile_override
    config = load_scenario(scenario, overrides)
    original = make_core(config, num_envs=3, seed=7)
    act = np.random.default_rng(0)
    for _ in range(400):                 # mid-slot, some copies already reset
        done = original.step(act.integers(0, original.encoding.n, 3)).done
        original.reset(done)
    restored = make_core(config, num_envs=3, seed=99)
    restored.set_state(original.get_state())
    for _ in range(300):
        actions = act.integers(0, original.encoding.n, 3)
        np.testing.assert_array_equal(restored.observe(), original.observe())
        a, b = original.step(actions), restored.step(actions)
        np.testing.assert_array_equal(a.reward, b.reward)
        original.reset(a.done)
        restored.reset(b.done)
    with pytest.raises(ValueError, match="3 copies"):
        make_core(config, num_envs=2).set_state(original.get_state())


def test_a_snapshot_refuses_a_core_of_another_episode_stream():
    public = make_core(load_scenario("dedgeai", ["slots=3"]), num_envs=1)
    generator = make_core(load_scenario("dedgeai", ["slots=3", "episode_stream=generator"]), num_envs=1)
    with pytest.raises(ValueError, match="episode_stream"):
        generator.set_state(public.get_state())
