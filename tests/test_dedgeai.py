"""dedgeai: the core against a per-task reference written from DESIGN.md's formulas."""
import numpy as np
import pytest

from envs.credit import PlacementLedger
from envs.dedgeai import DedgeaiConfig, DedgeaiCore, caused_wait
from envs.scenarios import load_scenario, make_core
from policies.evaluation import evaluate


def reference_episode(config: DedgeaiConfig, counts, inputs, work, result, policy):
    """Scalar LAD-TS delays, one task at a time, in (slot, BS, position) order."""
    f, r = config.es_capacities(), config.bs_rates()
    queue, delays = np.zeros(config.n_bs), []
    for t in range(config.decided_slots):
        placed = np.zeros(config.n_bs)
        for b in range(config.n_bs):
            for n in range(counts[t][b]):
                d, w, o = inputs[t][b][n], work[t][b][n], result[t][b][n]
                a = policy(b, d, w, o, queue, placed)
                delay = (a != b) * d / r[a] + w / f[a] + o / r[a] + (queue[a] + placed[a]) / f[a]
                placed[a] += w
                delays.append(delay)
        queue = np.maximum(queue + placed - f * config.slot_s, 0.0)
    return np.array(delays)


def record_core_episode(core: DedgeaiCore, choose):
    """Run one episode of a 1-copy core, recording the tasks it drew and the delays it charged."""
    cfg = core.config
    counts = np.zeros((cfg.slots, cfg.n_bs), dtype=int)
    inputs, work, result = ({} for _ in range(3))
    delays, done = [], False
    while not done:
        t, b, n = int(core.slot[0]), int(core.bs[0]), int(core.pos[0])
        counts[t, b] = core.counts[0, b]
        d, w, o = (float(x[0]) for x in core._task(core.rows))
        for store, value in ((inputs, d), (work, w), (result, o)):
            store.setdefault(t, {}).setdefault(b, {})[n] = value
        step = core.step(np.array([choose(core, b)]))
        delays.append(step.delay_s[0])
        done = bool(step.done[0])
    return counts, inputs, work, result, np.array(delays)


@pytest.mark.parametrize("mode", ["faithful", "corrected"])
def test_core_matches_reference_formula(mode):
    config = DedgeaiConfig(mode=mode, slots=5, episode_stream="generator")
    core = DedgeaiCore(config, num_envs=1, seed=7)
    rng = np.random.default_rng(1)
    actions = []

    def choose(_core, _b):
        actions.append(int(rng.integers(config.n_bs)))
        return actions[-1]

    counts, inputs, work, result, delays = record_core_episode(core, choose)
    replay = iter(actions)
    expected = reference_episode(config, counts, inputs, work, result, lambda *_: next(replay))
    np.testing.assert_allclose(delays, expected, rtol=1e-12)


def test_faithful_mode_indexes_task_draws_by_position():
    config = DedgeaiConfig(slots=3, episode_stream="generator")
    c, q, o = config.position_tasks()
    core = DedgeaiCore(config, num_envs=1, seed=0)
    _, _, work, result, _ = record_core_episode(core, lambda core, b: b)
    for slot in work.values():
        for per_bs in slot.values():
            for n, w in per_bs.items():
                assert w == pytest.approx(c[n] * q[n])
    assert result[0][0][0] == pytest.approx(o[0])


def test_default_capacities_total_656_and_public_rates():
    config = DedgeaiConfig()
    assert config.es_capacities().sum() == 656
    assert config.es_capacities().tolist() == np.random.RandomState(2).randint(10, 51, 20).tolist()
    assert config.bs_rates().tolist() == np.random.RandomState(5).randint(400, 501, 20).tolist()


def test_public_stream_reproduces_the_public_codes_first_greedy_episode():
    """Delays the public Opt-TS code prints for its first two episodes with these defaults."""
    result = evaluate(load_scenario("dedgeai"), "greedy", episodes=2)
    assert result["episode_mean_delay_s"] == pytest.approx([7.648833749453217, 7.450606234378978], rel=1e-9)


def test_observation_layouts_by_mode_and_form():
    assert DedgeaiCore(DedgeaiConfig(form="multi-agent")).layout.dim == 22
    assert DedgeaiCore(DedgeaiConfig()).layout.dim == 42
    corrected = DedgeaiCore(DedgeaiConfig(mode="corrected", episode_stream="generator"), num_envs=2)
    corrected.step(np.array([3, 3]))
    placed = corrected.layout.field(corrected.observe(), "placed_gcycles")
    assert (placed[:, 3] > 0).all() and placed[:, :3].sum() == 0


def test_same_seed_same_trajectory_different_seed_differs():
    def run(seed):
        core = DedgeaiCore(DedgeaiConfig(episode_stream="generator", slots=4), num_envs=3, seed=seed)
        rng = np.random.default_rng(0)
        return np.concatenate([core.step(rng.integers(0, 20, 3)).delay_s for _ in range(300)])

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_inactive_copies_are_left_untouched():
    core = DedgeaiCore(DedgeaiConfig(episode_stream="generator"), num_envs=3, seed=0)
    before = core.observe()
    result = core.step(np.array([1, 2, 3]), active=np.array([True, False, True]))
    after = core.observe()
    np.testing.assert_array_equal(before[1], after[1])
    assert np.isnan(result.delay_s[1]) and result.reward[1] == 0
    assert not np.array_equal(before[0], after[0])


def test_episode_ends_after_the_decided_slots():
    core = DedgeaiCore(DedgeaiConfig(slots=3, episode_stream="generator"), num_envs=4, seed=0)
    decisions = np.zeros(4, dtype=int)
    finished = np.zeros(4, dtype=bool)
    while not finished.all():
        step = core.step(np.zeros(4, dtype=np.int64), active=~finished)
        decisions += ~finished
        finished |= step.done
    # faithful mode decides slots - 1 = 2 slots; each BS has at least one task per slot
    assert (decisions >= 2 * 20).all() and (decisions <= 2 * 20 * 50).all()


def fifo_reference_credit(slot, server, work, capacity, n_slots, horizon):
    """Waiting suffered and caused, task by task, from explicit FIFO queues of (task, remainder),
    counting the waits of tasks placed at most `horizon` slots after the task they wait for."""
    n = len(work)
    suffered, caused = np.zeros(n), np.zeros(n)
    queues = [[] for _ in capacity]
    i = 0
    for t in range(n_slots):
        while i < n and slot[i] == t:
            a = server[i]
            for j, remainder in queues[a]:
                if t - slot[j] <= horizon:
                    suffered[i] += remainder / capacity[a]
                    caused[j] += remainder / capacity[a]
            queues[a].append([i, work[i]])
            i += 1
        for a, queue in enumerate(queues):
            budget = capacity[a]
            while queue and budget > 0:
                take = min(budget, queue[0][1])
                queue[0][1] -= take
                budget -= take
                if queue[0][1] <= 1e-12:
                    queue.pop(0)
    return suffered, caused


@pytest.mark.parametrize("mode", ["faithful", "corrected"])
def test_hindsight_credit_matches_fifo_queues_and_keeps_each_episodes_total(mode):
    config = DedgeaiConfig(mode=mode, slots=7, max_tasks=8, n_bs=4, capacities=[3.0, 5.0, 8.0, 12.0])
    core = PlacementLedger(DedgeaiCore(config, num_envs=2, seed=3))
    rng = np.random.default_rng(0)
    waits, total, credited, midway = [[], []], np.zeros(2), {}, {}
    while len(credited) < 2:
        live = np.array([r not in credited for r in range(2)])
        wait = core.network_state().target_wait_s
        actions = rng.integers(0, 4, 2)
        for r in np.flatnonzero(live):
            waits[r].append(wait[r, actions[r]])
        step = core.step(actions, live)
        total += step.reward
        if core.slot[0] == 4 and 0 not in midway:
            midway[0] = core.credited_rewards(0, 1.0, 1), core.final_decisions(0, 1)
        for r in np.flatnonzero(step.done):
            credited[r] = {(share, h): (core.credited_rewards(r, share, h), core.final_decisions(r, h))
                           for share in (0.0, 0.5, 1.0) for h in (0, 1, 2, 100)}
    slots = core.config.decided_slots
    for r in range(2):
        led, n = core.ledger, core.ledger["n"][r]
        args = led["slot"][r, :n], led["server"][r, :n], led["work"][r, :n]
        for h in (0, 1, 2, 100):
            suffered, caused = caused_wait(*args, core.capacity, 1.0, slots, h)
            ref_suffered, ref_caused = fifo_reference_credit(*args, core.capacity, slots, h)
            np.testing.assert_allclose(suffered, ref_suffered, atol=1e-9)
            np.testing.assert_allclose(caused, ref_caused, atol=1e-9)
            if h >= slots:
                np.testing.assert_allclose(suffered, waits[r], atol=1e-9)     # the core's (Q + Qbef) / f
            rewards, exact = credited[r][1.0, h]
            assert exact == n
            np.testing.assert_allclose(rewards, -(led["delay"][r, :n] - suffered + caused))
            assert caused.max() > 0
        assert not np.allclose(credited[r][1.0, 2][0], credited[r][0.0, 2][0])
        for (share, h), (rewards, _) in credited[r].items():
            if share == 0.0:
                np.testing.assert_allclose(rewards, -led["delay"][r, :n])
            assert rewards.sum() == pytest.approx(total[r], rel=1e-12)
    # Midway (slot 4 under way, horizon 1) the decisions of slots 0-2 are already final.
    rewards, exact = midway[0]
    assert exact == np.searchsorted(core.ledger["slot"][0], 3)
    np.testing.assert_allclose(rewards[:exact], credited[0][1.0, 1][0][:exact])
    assert not np.allclose(rewards[exact:], credited[0][1.0, 1][0][exact:len(rewards)])


def test_only_dedgeai_has_hindsight_credit_and_the_ledger_travels_in_snapshots():
    other = make_core(load_scenario("collab-exit"), 1, 0)
    with pytest.raises(NotImplementedError, match="collab-exit"):
        PlacementLedger(other)
    core = PlacementLedger(DedgeaiCore(DedgeaiConfig(slots=3, n_bs=3, max_tasks=4), num_envs=2, seed=0))
    for _ in range(5):
        core.step(np.array([0, 1]))
    snapshot = core.get_state()
    twin = PlacementLedger(DedgeaiCore(DedgeaiConfig(slots=3, n_bs=3, max_tasks=4), num_envs=2, seed=9))
    twin.set_state(snapshot)
    for name in core.ledger:
        np.testing.assert_array_equal(twin.ledger[name], core.ledger[name])
    np.testing.assert_array_equal(twin.credited_rewards(1, 1.0, 2), core.credited_rewards(1, 1.0, 2))
    core.reset(np.array([True, False]))
    assert core.ledger["n"].tolist() == [0, 5]
