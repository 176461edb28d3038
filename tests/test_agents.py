"""Diffusion actor, replay, artifact spec checks: fast, no Ray runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.diffusion import DiffusionActor, EnsembleMLP, policy_probs


def test_ensemble_grouped_equals_per_row():
    torch.manual_seed(0)
    net = EnsembleMLP(3, 5, 8, 4)
    x = torch.randn(3, 6, 5)                      # [E, m, in], block e = agent e
    grouped = net(x)
    agent = torch.arange(3).repeat_interleave(6)
    mixed = net(x.reshape(18, 5), agent)
    assert torch.allclose(grouped.reshape(18, 4), mixed, atol=1e-5)


def test_independent_agents_share_nothing():
    torch.manual_seed(0)
    net = EnsembleMLP(2, 3, 8, 2)
    out = net(torch.randn(2, 4, 3))
    out[0].sum().backward()                       # a loss of agent 0 only
    assert net.out.weight.grad[1].abs().sum() == 0
    assert net.out.weight.grad[0].abs().sum() > 0


def test_chain_is_deterministic_without_noise_and_bounded():
    torch.manual_seed(0)
    actor = DiffusionActor(4, 6, steps=5)
    obs, x = torch.randn(10, 4), torch.zeros(10, 6)
    a, b = actor(obs, x, noise=False), actor(obs, x, noise=False)
    assert torch.equal(a, b)
    assert a.abs().max() <= actor.max_logit_scale + 1e-5


@pytest.mark.parametrize("start", ["noise", "prior"])
def test_diffusion_actor_learns_a_contextual_bandit(start):
    """Gradients through the whole chain: the actor must find the best arm of each context."""
    torch.manual_seed(0)
    n = 8
    actor = DiffusionActor(n, n, hidden=64, steps=5)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    perm = torch.randperm(n)                     # best arm of context c is perm[c]
    for _ in range(300):
        c = torch.randint(0, n, (128,))
        obs = torch.nn.functional.one_hot(c, n).float()
        x = torch.randn(128, n) if start == "noise" else torch.full((128, n), 1.0 / n)
        probs, log_p = policy_probs(actor(obs, x, noise=True))
        reward = torch.nn.functional.one_hot(perm[c], n).float()
        loss = -(probs * reward).sum(-1).mean() + 0.01 * (probs * log_p).sum(-1).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        obs = torch.eye(n)
        x = torch.zeros(n, n) if start == "noise" else torch.full((n, n), 1.0 / n)
        greedy = actor(obs, x, noise=False).argmax(-1)
    accuracy = (greedy == perm).float().mean().item()
    assert accuracy >= 0.9, f"actor found the best arm in only {accuracy:.0%} of contexts (random: 12%)"
    assert actor.logit_scale().item() > 1.5       # the learned temperature sharpened the policy


def _transitions(k: int, n_agents: int = 3, demo: bool = False) -> dict:
    """k transitions of agents 0, 1, 2, ... in turn; obs = (agent, demo flag)."""
    agent = np.arange(k) % n_agents
    return {"obs": np.c_[agent, np.full(k, float(demo))].astype(np.float32),
            "next_obs": np.zeros((k, 2), np.float32), "act": agent.astype(np.int64),
            "rew": agent.astype(np.float32), "done": np.zeros(k, bool), "agent": agent,
            "prior": np.zeros((k, 4), np.float32), "next_prior": np.zeros((k, 4), np.float32),
            "by_source": np.full(k, demo)}


def test_replay_groups_rows_by_agent():
    from policies.sac.replay import TransitionReplay
    from policies.sac.module import AGENT

    rp = TransitionReplay(3, 100, obs_dim=2, n_actions=4, seed=0)
    rp.add(_transitions(30))
    batch = rp.sample(m=5, k=2)
    assert batch["obs"].shape == (2 * 3 * 5, 2)
    blocks = batch[AGENT].reshape(2, 3, 5)
    assert (blocks == np.arange(3)[None, :, None]).all()
    # every row of agent e's block came from agent e's transitions
    assert (batch["obs"][:, 0] == batch[AGENT]).all()


def test_kept_demonstrations_are_a_fixed_share_of_every_agents_rows():
    """training.demonstrations.batch_share: demonstrations kept apart fill that share of each
    agent's rows of each minibatch (all of them until the agent's own buffer is ready, none once lost)."""
    from policies.extensions.demonstrations import KeptDemonstrations
    from policies.sac.module import AGENT, BY_SOURCE
    from policies.sac.replay import TransitionReplay

    def replay(seed):
        return TransitionReplay(3, 100, obs_dim=2, n_actions=4, seed=seed)

    buffers = KeptDemonstrations(replay(0), replay(1), batch_share=0.25)
    buffers.add(_transitions(60, demo=True))
    assert buffers.kept.size.sum() == 60 and buffers.own.size.sum() == 0     # kept apart
    only_kept = buffers.sample(m=8, k=2)
    assert only_kept[BY_SOURCE].all()
    buffers.add(_transitions(60))
    batch = buffers.sample(m=8, k=2)
    blocks = batch[BY_SOURCE].reshape(2, 3, 8)
    assert (blocks.sum(-1) == 2).all()                        # 2 of every agent's 8 rows
    assert (batch["obs"][:, 0] == batch[AGENT]).all()         # still grouped by agent
    assert (batch["obs"][:, 1] == batch[BY_SOURCE]).all()     # each row is what it says
    lost = KeptDemonstrations(buffers.own, replay(1), batch_share=0.25)   # after a resume
    assert not lost.sample(m=8, k=1)[BY_SOURCE].any()


def _small_scenario(*extra):
    from envs.scenarios import load_scenario
    return load_scenario("dedgeai", ["n_bs=4", "slots=3", "max_tasks=5", *extra])


def _module_for(config, algo_start="prior", n_agents=1, **model):
    import gymnasium as gym
    from envs.scenarios import make_core
    from policies.sac.module import DiffusionSACModule

    core = make_core(config, 1, 0)
    return DiffusionSACModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (core.layout.dim,), np.float32),
        action_space=gym.spaces.Discrete(core.encoding.n),
        model_config={"start": algo_start, "n_agents": n_agents, "hidden": 16, "critic_hidden": 16,
                      "obs_scale": [float(s) for s in core.layout.scales()], **model}), core


def test_artifact_loads_without_ray_and_refuses_a_mismatch(tmp_path):
    from policies.artifact import PolicySpecMismatch, load_policy, write_artifact

    config = _small_scenario()
    module, core = _module_for(config)
    store = np.full((core.num_context_keys, core.encoding.n), 1.0 / core.encoding.n, np.float32)
    write_artifact(tmp_path / "policy", module=module, config=config, algorithm="lad",
                   training_config={"episodes": 1}, lad_store=store)
    policy = load_policy(str(tmp_path / "policy"), config)
    obs = core.observe()
    state = core.network_state()
    actions = policy.decide(obs, state)
    assert actions.shape == (1,) and 0 <= actions[0] < core.encoding.n
    # the same module as RLlib would act greedily: argmax of its inference output
    import ray.rllib.core.columns as cols
    with torch.no_grad():
        prior = torch.as_tensor(store[core.context_key()])
        out = module.forward_inference({cols.Columns.OBS: torch.as_tensor(obs), "prior": prior})
    assert int(out[cols.Columns.ACTION_DIST_INPUTS].argmax(-1)[0]) == int(actions[0])

    with pytest.raises(PolicySpecMismatch, match="observation layout dim"):
        load_policy(str(tmp_path / "policy"), _small_scenario("mode=corrected"))
    with pytest.raises(PolicySpecMismatch, match="action encoding"):
        load_policy(str(tmp_path / "policy"), _small_scenario("n_bs=5"))


def test_multi_agent_artifact_needs_the_acting_agent(tmp_path):
    from policies.artifact import load_policy, write_artifact

    config = _small_scenario("form=multi-agent")
    module, core = _module_for(config, "noise", n_agents=4)
    write_artifact(tmp_path / "p", module=module, config=config, algorithm="d2sac", training_config={})
    policy = load_policy(str(tmp_path / "p"), config)
    with pytest.raises(ValueError, match="which agent acts"):
        policy.decide(core.observe())
    assert policy.decide(core.observe(), core.network_state()).shape == (1,)


@pytest.mark.parametrize("actor", ["diffusion", "mlp"])
def test_per_action_artifact_acts_as_the_module(tmp_path, actor):
    from policies.artifact import load_policy, write_artifact

    from envs.scenarios import make_core

    config = _small_scenario("mode=corrected")
    module, core = _module_for(config, "noise", actor=actor, network="per-action",
                               per_action_columns=make_core(config, 1, 0).layout.per_action_columns())
    assert type(module.qf).__name__ == "PerActionNet"
    write_artifact(tmp_path / "p", module=module, config=config, algorithm="d2sac", training_config={})
    policy = load_policy(str(tmp_path / "p"), config)
    import ray.rllib.core.columns as cols
    obs = np.concatenate([core.observe() for _ in range(8)]) * np.linspace(0.5, 3.0, 8, dtype=np.float32)[:, None]
    with torch.no_grad():
        out = module.forward_inference({cols.Columns.OBS: torch.as_tensor(obs)})[cols.Columns.ACTION_DIST_INPUTS]
    assert np.array_equal(policy.decide(obs), out.argmax(-1).numpy())


def test_per_action_network_scores_every_action_with_one_function():
    """Two servers in the same state, with the same learned offset, get the same score (Q value,
    or denoiser output); a flat MLP gives each output its own weights."""
    from policies.diffusion import PerActionDenoiser, PerActionNet

    torch.manual_seed(0)
    columns = [[2, 3, 4, 5], [6, 7, 8, 9]]        # two per-action fields over 4 actions; 0-1 global
    obs = torch.rand(5, 10)
    obs[:, [3, 7]] = obs[:, [5, 9]]               # actions 1 and 3: identical own columns
    net = PerActionNet(10, columns, hidden=16)
    with torch.no_grad():
        net.action_offset.normal_()
        net.action_offset[3] = net.action_offset[1]
    q = net(obs)
    assert q.shape == (5, 4)
    assert torch.allclose(q[:, 1], q[:, 3]) and not torch.allclose(q[:, 0], q[:, 2])
    denoiser = PerActionDenoiser(10, columns, hidden=16, t_dim=4)
    with torch.no_grad():
        denoiser.action_offset.normal_()
        denoiser.action_offset[3] = denoiser.action_offset[1]
    x = torch.randn(5, 4)
    x[:, 3] = x[:, 1]
    eps = denoiser.eps(x, torch.randn(4), denoiser.state_part(obs))
    assert torch.allclose(eps[:, 1], eps[:, 3]) and not torch.allclose(eps[:, 0], eps[:, 2])


def test_model_options_are_checked_before_anything_runs():
    from envs.config import ConfigError
    from policies.options import ModelOptions
    from policies.registry import algorithm_config
    from policies.sac.config import per_action_columns_for

    cases = [
        ("dedgeai-corrected", ["form=shared"], {"network": "graph"}, r"model.network: Input should be 'flat' or 'per-action'"),
        ("dedgeai-corrected", ["form=shared"], {"hiden": 8}, r"model.hiden: unknown key \(did you mean hidden"),
        ("dedgeai-corrected", ["form=shared"], {"beta_min": 2.0, "beta_max": 1.0}, r"beta_max \(1.0\) must be > beta_min"),
        ("dedgeai", ["form=multi-agent"], {"network": "per-action"}, r"needs the shared form \(this scenario has 20"),
        ("collab-exit", [], {"network": "per-action"}, r"the collab-exit layout has none"),
    ]
    for scenario, overrides, model, message in cases:
        with pytest.raises(ConfigError, match=message):
            algorithm_config("sac-mlp", {"scenario": scenario, "overrides": overrides}, num_envs=1, model=model)
    from envs.observation import ObservationLayout, ObsField
    three_servers = ObservationLayout("toy", (ObsField("queue", 3, 1.0, per_action=True),))
    with pytest.raises(ConfigError, match=r"fields have \[3\], the scenario 4 actions"):
        per_action_columns_for(ModelOptions(network="per-action"), three_servers, n_agents=1, n_actions=4)
    cfg = algorithm_config("d2sac", {"scenario": "dedgeai-corrected", "overrides": ["form=shared"]}, num_envs=1,
                           model={"network": "per-action"})
    assert cfg.rl_module_spec.model_config["per_action_columns"][0] == list(range(2, 22))


def test_bench_policy_reports_the_cli_keys():
    import argparse
    from policies.bench import bench_policy

    out = bench_policy(argparse.Namespace(scenario="dedgeai", seconds=0.2))
    assert {"batch1_ms", "batch1024_ms", "diffusion_steps"} <= set(out)
    assert out["diffusion_steps"] == 5 and out["batch1_ms"] > 0


def test_lad_keys_faithful_and_no_slot():
    from envs.scenarios import make_core
    from policies.sac.runner import LadKeys

    config = _small_scenario()
    core = make_core(config, 3, 0)
    faithful, no_slot = LadKeys(core, "faithful"), LadKeys(core, "no-slot")
    assert faithful.size == core.num_context_keys
    assert no_slot.size == 4 * 5
    seen_f, seen_n = set(), set()
    while not core.step(np.zeros(3, np.int64)).done.any():
        seen_f.update(faithful(core).tolist())
        seen_n.update(no_slot(core).tolist())
    assert max(seen_f) < faithful.size and max(seen_n) < no_slot.size
    assert len(seen_n) < len(seen_f)              # the slot no longer separates contexts
    with pytest.raises(ValueError, match="unknown lad_keying"):
        LadKeys(core, "nonsense")


@pytest.mark.parametrize("grouped", [False, True])
def test_chain_reuses_the_state_projection_exactly(grouped):
    """The fast path (state part of the first layer computed once) equals eps(cat(x, t, s))."""
    torch.manual_seed(0)
    E = 3
    actor = DiffusionActor(5, 4, n_agents=E, hidden=16, steps=3)
    obs = torch.randn(E, 6, 5) if grouped else torch.randn(18, 5)
    agent = None if grouped else torch.arange(E).repeat_interleave(6)
    x = torch.randn(*obs.shape[:-1], 4)
    fast = actor(obs, x, agent, noise=False)
    # reference: the plain loop over eps_model(cat(...))
    y = x
    for i in reversed(range(actor.steps)):
        t = actor.t_emb[i].expand(*y.shape[:-1], actor.t_dim)
        eps = actor.eps_model(torch.cat([y, t, obs], -1), agent)
        x0 = torch.tanh(actor.recip_sqrt_abar[i] * y - actor.recipm1_sqrt_abar[i] * eps)
        y = actor.post_c0[i] * x0 + actor.post_ct[i] * y
    ref = actor.scale(agent, y.dim()) * y
    assert torch.allclose(fast, ref, atol=1e-5)


@pytest.mark.parametrize("budget", [7, 2])        # more episodes than copies, and fewer
def test_runner_starts_exactly_the_budget_and_numbers_by_start(budget):
    from policies.registry import algorithm_config
    from policies.sac.runner import EdgeDecisionRunner

    env_config = {"scenario": "dedgeai", "overrides": ["n_bs=4", "slots=3", "max_tasks=8"], "seed": 3}
    cfg = algorithm_config("d2sac", env_config, num_envs=3, seed=3,
                           model={"hidden": 16, "critic_hidden": 16})
    cfg.training(episode_budget=budget)
    runner = EdgeDecisionRunner(config=cfg)
    assert runner.active.sum() == min(budget, 3)
    finished, total = [], 0
    for _ in range(200):
        data = runner.sample(num_timesteps=50)
        finished += runner.get_metrics()
        total += data["decisions"]
        if data["decisions"] == 0:
            break
    starts = [e["start"] for e in finished]
    assert sorted(starts) == list(range(1, budget + 1))  # each budgeted episode, once
    assert not runner.active.any()                       # then every copy idles
    assert total == sum(e["decisions"] for e in finished)   # no decision outside an episode
    # the episodes have random lengths, so finishing order differs from starting order somewhere
    lengths = {e["start"]: e["decisions"] for e in finished}
    assert len(set(lengths.values())) > 1 or budget < 3


def _budget_runner(scenario: str, overrides: list[str], algo: str, num_envs: int, budget: int, seed: int):
    from policies.registry import algorithm_config
    from policies.sac.runner import EdgeDecisionRunner

    env_config = {"scenario": scenario, "overrides": overrides, "seed": seed}
    cfg = algorithm_config(algo, env_config, num_envs=num_envs, seed=seed, model={"hidden": 8, "critic_hidden": 8})
    cfg.training(episode_budget=budget)
    return EdgeDecisionRunner(config=cfg)


def _decisions_by_start(runner) -> dict[int, int]:
    """Sample until the runner's budget is done -> decisions of each episode by its start number."""
    finished = []
    while runner.active.any():
        runner.sample(num_timesteps=20)
        finished += runner.get_metrics()
    return {e["start"]: e["decisions"] for e in finished}


def test_training_episodes_are_the_evaluation_episodes_of_the_same_seed(monkeypatch):
    """On dedgeai's public stream, episode k of a run is the k-th `evaluate` plays with the same seed, however many
    copies either runs at once: a run's last episodes can be compared with a heuristic on
    exactly those episodes."""
    from envs.scenarios import load_scenario
    from policies import evaluation
    from policies.catalog import make_policy

    overrides = ["n_bs=3", "slots=3", "max_tasks=6"]
    by_start = _decisions_by_start(_budget_runner("dedgeai", overrides, "d2sac", num_envs=2, budget=5, seed=11))

    config = load_scenario("dedgeai", overrides)
    greedy = make_policy("greedy", config)
    for parallel in (32, 2):          # one round of 5, or rounds of 2, 2, 1 on the same core
        monkeypatch.setattr(evaluation, "MAX_PARALLEL_EPISODES", parallel)
        log = evaluation.run_episodes(config, greedy, episodes=5, seed=11)
        # decisions per episode = its task count, drawn by the stream whatever the policy does
        assert [len(d) for d in log.delays] == [by_start[k] for k in range(1, 6)]
    assert len(set(by_start.values())) > 1


def _record_steps(core, log: list):
    """Wrap `core.step` to log, before every step, which copies step and their tasks' features."""
    step = core.step

    def recorded(actions, active=None):
        mask = np.ones(core.num_envs, bool) if active is None else np.array(active, bool)
        log.append((mask, core.observe()[:, :2].copy()))      # input size, work of each task
        return step(actions, active)
    core.step = recorded
    return core


def test_greedy_replays_exactly_the_tasks_a_run_decided_in_corrected_mode(monkeypatch):
    """dedgeai-corrected draws each slot's tasks as its copy begins the slot, from one generator
    for all copies, so `evaluate` (another number of copies) plays other episodes;
    `on_runner_episodes` steps the core as the runner does and must see exactly the run's tasks,
    step by step."""
    from envs.scenarios import load_scenario, make_core
    from policies import evaluation
    from policies.catalog import make_policy

    overrides = ["n_bs=3", "slots=3", "max_tasks=6"]
    runner = _budget_runner("dedgeai-corrected", overrides, "sac-mlp", num_envs=3, budget=7, seed=11)
    run_log: list = []
    _record_steps(runner.core, run_log)
    by_start = _decisions_by_start(runner)

    config = load_scenario("dedgeai-corrected", overrides)
    greedy = make_policy("greedy", config)
    replay_log: list = []
    monkeypatch.setattr(evaluation, "make_core", lambda *a, **k: _record_steps(make_core(*a, **k), replay_log))
    replayed = evaluation.on_runner_episodes(config, greedy, seed=11, num_envs=3, episodes=7)
    assert [e["decisions"] for e in replayed] == [by_start[k] for k in range(1, 8)]
    assert len(replay_log) == len(run_log)
    for (mask, tasks), (run_mask, run_tasks) in zip(replay_log, run_log):
        np.testing.assert_array_equal(mask, run_mask)
        np.testing.assert_array_equal(tasks[mask], run_tasks[mask])
    # evaluate's core of another size draws other episodes from the same seed
    monkeypatch.undo()
    log = evaluation.run_episodes(config, greedy, episodes=7, seed=11)
    assert [len(d) for d in log.delays] != [e["decisions"] for e in replayed]


def test_a_resumed_runner_continues_its_episodes_in_flight():
    """A checkpoint carries each runner's snapshot: after a resume the episodes in flight go on
    and episode k is still the k-th the seeded core draws (no replay of the first episodes)."""
    import pickle

    from policies.registry import algorithm_config
    from policies.sac.runner import EdgeDecisionRunner

    env_config = {"scenario": "dedgeai", "overrides": ["n_bs=3", "slots=3", "max_tasks=6"], "seed": 5}
    cfg = algorithm_config("d2sac", env_config, num_envs=2, seed=5, model={"hidden": 8, "critic_hidden": 8})
    cfg.training(episode_budget=10)

    def finish(runner) -> list[dict]:
        out = []
        while runner.active.any():
            runner.sample(num_timesteps=20)
            out += runner.get_metrics()
        return out

    whole = {e["start"]: e["decisions"] for e in finish(EdgeDecisionRunner(config=cfg))}
    before = EdgeDecisionRunner(config=cfg)
    before.sample(num_timesteps=150)
    done_before = before.get_metrics()
    assert before.p_open.any() and len(done_before) > 2   # mid-episode, past the first round
    snapshot = pickle.loads(pickle.dumps(before.sampler_state()))   # as a checkpoint stores it
    after = EdgeDecisionRunner(config=cfg)
    after.resume(snapshot, done=len(done_before), next_start=0)
    resumed = {e["start"]: e["decisions"] for e in done_before + finish(after)}
    assert resumed == whole and sorted(whole) == list(range(1, 11))
    # Without a fitting snapshot (another num_envs) the runner starts afresh and says nothing wrong.
    other = EdgeDecisionRunner(config=algorithm_config("d2sac", env_config, num_envs=3, seed=5,
                                                       model={"hidden": 8, "critic_hidden": 8}))
    other.resume(snapshot, done=2, next_start=3)
    assert other.started == 5 and other.ep_start.tolist() == [3, 4, 5]


def test_a_resumed_lad_runner_gets_its_own_store_back():
    """Each runner keeps its own LAD store (its own episodes); the snapshot carries it, so a
    resume does not replace it with another runner's or with the mean the artifact gets."""
    import pickle

    from policies.registry import algorithm_config
    from policies.sac.runner import EdgeDecisionRunner

    env_config = {"scenario": "dedgeai", "overrides": ["n_bs=3", "slots=3", "max_tasks=6"], "seed": 4}
    cfg = algorithm_config("lad", env_config, num_envs=2, seed=4, model={"hidden": 8, "critic_hidden": 8})
    before = EdgeDecisionRunner(config=cfg)
    before.sample(num_timesteps=60)
    snapshot = pickle.loads(pickle.dumps(before.sampler_state()))
    after = EdgeDecisionRunner(config=cfg)
    after.set_state({"lad_store": np.full_like(after.store, 0.5)})   # what set_state broadcasts first
    after.resume(snapshot, done=0, next_start=1)
    assert not np.allclose(before.store, 1.0 / before.store.shape[1])
    np.testing.assert_array_equal(after.store, before.store)


@pytest.mark.parametrize("form", ["shared", "multi-agent"])
def test_caused_credit_transitions_arrive_once_per_decision_with_the_episodes_return(form):
    """training.hindsight_credit: every decision's transition reaches the learner once, `horizon`
    slots after it was taken (before its episode ends), and an episode's credited rewards sum to
    its return (its total -delay)."""
    from policies.registry import algorithm_config
    from policies.sac.runner import EdgeDecisionRunner

    overrides = ["n_bs=3", "slots=8", "max_tasks=6", f"form={form}"]
    env_config = {"scenario": "dedgeai-corrected", "overrides": overrides, "seed": 2}
    cfg = algorithm_config("sac-mlp", env_config, num_envs=2, seed=2, model={"hidden": 8, "critic_hidden": 8},
                           training={"hindsight_credit": {"share": 0.5, "horizon": 1}})
    cfg.training(episode_budget=5)
    runner = EdgeDecisionRunner(config=cfg)
    returns, indices, rewards, early = {}, {}, {}, 0
    while runner.active.any():
        data = runner.sample(num_timesteps=7)
        returns.update({e["start"]: e["return"] for e in runner.get_metrics()})
        for ep in np.unique(data.get("episode", [])):
            mine = data["episode"] == ep
            indices.setdefault(ep, []).extend(data["index"][mine])
            rewards[ep] = rewards.get(ep, 0.0) + data["rew"][mine].sum()
            early += ep not in returns          # arrived while its episode was still running
    assert sorted(indices) == sorted(returns) == [1, 2, 3, 4, 5]
    assert all(sorted(ix) == list(range(len(ix))) for ix in indices.values())
    for ep, total in returns.items():
        assert rewards[ep] == pytest.approx(total, rel=1e-5)
    assert early > 0 and not runner.reward_processors[0].awaiting


def test_training_options_are_checked_before_anything_runs():
    """A typo, a number out of range or an extension the scenario lacks: a ConfigError naming the
    field (the CLI prints it as one line), raised while building the config."""
    from envs.config import ConfigError
    from policies.registry import algorithm_config

    demo = {"policy": "greedy", "decisions": 5}
    cases = [
        ("sac-mlp", "dedgeai", {"hindsight_credit": {"share": 1.5}},
         r"training.hindsight_credit.share: Input should be less than or equal to 1 \(got 1.5\)"),
        ("lad", "dedgeai", {"actor_lr": -1}, r"training.actor_lr: Input should be greater than 0 \(got -1\)"),
        ("d2sac", "dedgeai", {"hindsight_credit": {"share": 0.5, "horizon": 2.5}},
         r"training.hindsight_credit.horizon: Input should be a valid integer"),
        ("lad", "dedgeai", {"actor_lrr": 1e-3}, r"training.actor_lrr: unknown key \(did you mean actor_lr"),
        ("ppo", "dedgeai", {"lrr": 1e-3}, r"training.lrr is not a training option of ppo \(did you mean lr"),
        ("ppo", "dedgeai", {"lr": 0}, r"training.lr: Input should be greater than 0"),
        ("sac-mlp", "collab-exit", {"hindsight_credit": {"share": 1.0}},
         r"training.hindsight_credit needs.*'collab-exit' has no hindsight"),
        ("sac-mlp", "dedgeai", {"demonstrations": {"decisions": 10}}, r"training.demonstrations.policy: Field required"),
        ("sac-mlp", "dedgeai", {"demonstrations": {**demo, "bc_weight": -1}},
         r"training.demonstrations.bc_weight: Input should be greater than or equal to 0"),
        ("sac-mlp", "dedgeai", {"demonstrations": {**demo, "batch_share": 1.0}},
         r"training.demonstrations.batch_share: Input should be less than 1"),
        ("sac-mlp", "dedgeai", {"demonstrations": {**demo, "policy": "best"}},
         r"training.demonstrations.policy 'best' is not a heuristic"),
        ("sac-mlp", "dedgeai", {"demonstrations": {**demo, "policy": "size-split:x"}},
         r"must look like size-split:THETA\[:COVER\]"),
        ("sac-mlp", "dedgeai", {"demonstrations": {**demo, "policy": "size-split:100"}},
         r"size-split:100.*choose a smaller theta"),
        ("sac-mlp", "collab-exit", {"demonstrations": {**demo, "policy": "size-split:1.5"}}, r"defined for dedgeai only"),
        ("sac-mlp", "dedgeai", {"demonstrations": demo, "random_decisions": 5},
         r"training.demonstrations and training.random_decisions both choose"),
    ]
    for algo, scenario, training, message in cases:
        with pytest.raises(ConfigError, match=message):
            algorithm_config(algo, {"scenario": scenario}, num_envs=1, training=training)
    ok = algorithm_config("sac-mlp", {"scenario": "dedgeai"}, training={"hindsight_credit": {"share": 0.5}, "gamma": 0.9})
    assert ok.options.hindsight_credit.share == 0.5 and ok.gamma == 0.9 and ok.options.demonstrations is None


def test_demonstrated_transitions_carry_the_demonstrators_actions_and_say_so():
    """training.demonstrations: while its source acts, the demonstrator decides (here `local`: each
    task stays at its own BS) and every transition it opened is marked; the module's are not."""
    from policies.registry import algorithm_config
    from policies.sac.runner import EdgeDecisionRunner

    overrides = ["n_bs=4", "slots=4", "max_tasks=6", "form=shared"]
    env_config = {"scenario": "dedgeai-corrected", "overrides": overrides, "seed": 5}
    cfg = algorithm_config("sac-mlp", env_config, num_envs=2, seed=5, model={"hidden": 8, "critic_hidden": 8},
                           training={"demonstrations": {"policy": "local", "decisions": 30}})
    runner = EdgeDecisionRunner(config=cfg)
    own_bs = lambda data: runner.core.layout.field(data["obs"], "bs_onehot").argmax(1)

    demonstrated = runner.sample(num_timesteps=30, source="demo")
    assert demonstrated["by_source"].all() and len(demonstrated["act"]) > 0
    np.testing.assert_array_equal(demonstrated["act"], own_bs(demonstrated))
    still_open = int(runner.p_open.sum())            # demonstrated decisions not closed yet
    own = runner.sample(num_timesteps=60)
    marked = own["by_source"]
    assert marked.sum() == still_open
    np.testing.assert_array_equal(own["act"][marked], own_bs(own)[marked])
    assert (own["act"][~marked] != own_bs(own)[~marked]).any()   # the module's own choices
    with pytest.raises(ValueError, match="no action source 'reuse'"):
        runner.sample(num_timesteps=5, source="reuse")


def test_a_policy_trained_on_another_exit_profile_is_refused(tmp_path, profile_override):
    """The artifact records the digest of the ExitProfile its scenario was built from: the same
    profile loads, a re-measured one (other ms per step) is refused, naming both digests."""
    import json

    from envs.profile import load_profile, save_profile
    from envs.scenarios import load_scenario
    from policies.artifact import PolicySpecMismatch, load_policy, write_artifact

    config = load_scenario("collab-exit/urban", profile_override)
    module, core = _module_for(config, "noise")
    write_artifact(tmp_path / "p", module=module, config=config, algorithm="d2sac", training_config={})
    spec = json.loads((tmp_path / "p" / "policy_spec.json").read_text())
    assert spec["profile_hash"] == core.profile.digest()
    assert load_policy(str(tmp_path / "p"), config).decide(core.observe()).shape == (1,)
    remeasured = load_profile(profile_override[0].split("=", 1)[1])
    remeasured.plans[0].ms_per_step_b1 *= 1.5
    save_profile(remeasured, tmp_path / "remeasured.json")
    other = load_scenario("collab-exit/urban", [f"profile={tmp_path / 'remeasured.json'}"])
    with pytest.raises(PolicySpecMismatch, match=f"generator profile: policy {core.profile.digest()}"):
        load_policy(str(tmp_path / "p"), other)
