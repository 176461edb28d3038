"""`aigc-edge train` end to end on a tiny dedgeai: checkpoints, resume, MLflow, artifact, evaluate.

One Ray session for the module (2 CPUs, shut down at the end); tiny budgets; run state and the
MLflow store in the per-test temporary home of tests/conftest.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from policies.callbacks import TrainingCallbacks

TINY = ["n_bs=4", "slots=4", "max_tasks=6"]
FAST = {"rollout_decisions": 40, "decisions_per_update": 10, "minibatch_per_agent": 32,
        "learning_starts": 64, "replay_capacity": 5000}


@pytest.fixture(scope="module")
def ray_session():
    """One Ray session for the module. Run state goes to conftest's per-test AIGC_EDGE_HOME."""
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tracked():
    """How the CLI records a run: an MLflow run that registers the policy."""
    from policies.tracking import MlflowTrainingRecorder
    return [MlflowTrainingRecorder()]


def _cfg(**kw):
    from policies.training import TrainConfig
    base = dict(scenario="dedgeai", scenario_overrides=TINY, algo="lad", episodes=4, num_envs=2,
                training=FAST, model={"hidden": 32, "critic_hidden": 32}, checkpoint_every_s=0.5)
    base.update(kw)
    if base["algo"] in ("ppo", "dqn", "sac"):          # RLlib's own: its MLP models
        base.pop("model")
    return TrainConfig(**base)


@pytest.mark.slow
def test_train_registers_a_champion_that_evaluate_loads(ray_session):
    from envs.scenarios import load_scenario
    from policies.tracking import configure_mlflow
    from policies.evaluation import evaluate
    from policies.training import train

    result = train(_cfg(), callbacks=tracked())
    assert result["episodes"] == 4 and result["algo"] == "lad"
    assert np.isfinite(result["final_mean_delay_s"])
    assert os.path.isdir(result["checkpoint"])
    mlflow = configure_mlflow()
    run = mlflow.get_run(result["run_id"])
    assert "charts/mean_delay_last10_s" in run.data.metrics
    assert run.data.params["train.algo"] == "lad"
    history = mlflow.MlflowClient().get_metric_history(result["run_id"], "charts/episodes")
    assert len(history) >= 2                                 # one log_batch per iteration
    config = load_scenario("dedgeai", TINY)
    for spec in (result["policy"], result["checkpoint"], result["model_uri"]):
        out = evaluate(config, spec, episodes=2, seed=1)
        assert out["episodes"] == 2 and np.isfinite(out["mean_delay_s"])


@pytest.mark.slow
def test_per_action_networks_train_and_their_artifact_loads(ray_session):
    from envs.scenarios import load_scenario
    from policies.evaluation import evaluate
    from policies.training import train

    overrides = [*TINY, "mode=corrected", "form=shared"]
    result = train(_cfg(algo="d2sac", scenario_overrides=overrides, register_policy=False,
                        model={"network": "per-action", "hidden": 16, "critic_hidden": 16}), callbacks=tracked())
    spec = json.loads((Path(result["policy"]) / "policy_spec.json").read_text())
    assert spec["model_config"]["network"] == "per-action"
    assert len(spec["model_config"]["per_action_columns"]) == 3      # queue, placed, arrival BS
    config = load_scenario("dedgeai", overrides)
    for policy in (result["policy"], result["checkpoint"]):
        out = evaluate(config, policy, episodes=2, seed=1)
        assert out["episodes"] == 2 and np.isfinite(out["mean_delay_s"])


@pytest.mark.slow
def test_resume_continues_the_episode_count_and_the_run(ray_session):
    from policies.training import train

    first = train(_cfg(algo="d2sac", episodes=2, run_name="resume-me"), callbacks=tracked())
    second = train(_cfg(algo="d2sac", episodes=5, run_name="resume-me"), resume=True, callbacks=tracked())
    assert first["episodes"] == 2 and second["resumed_from_episode"] == 2
    assert second["episodes"] == 5                       # exactly the budget: none cut short
    assert second["run_id"] == first["run_id"]
    third = train(_cfg(algo="d2sac", episodes=6, run_name="resume-me"), resume=True, callbacks=tracked())
    assert third["resumed_at"] == [2, 5]                 # every resume is on record
    from policies.tracking import checkpoints_dir
    state = json.loads((checkpoints_dir() / "resume-me" / "run.json").read_text())
    assert state["episodes_done"] == third["episodes"] == 6
    rows = (checkpoints_dir() / "resume-me" / "episodes.csv").read_text().splitlines()
    header = rows[0].split(",")
    starts = [float(r.split(",")[header.index("start")]) for r in rows[1:]]
    assert starts == sorted(starts) and len(set(starts)) == 6   # numbered by start, no repeats


@pytest.mark.slow
def test_two_remote_runners_share_the_budget_and_resume_with_their_own_episodes(ray_session):
    """num_env_runners=2: each remote runner starts half the episodes (its own seeded stream, its
    own LAD store), a resume continues both, and the artifact gets the mean of their stores."""
    from policies.tracking import checkpoints_dir
    from policies.training import train

    cfg = dict(num_env_runners=2, run_name="two-runners", register_policy=False)
    first = train(_cfg(episodes=4, **cfg), callbacks=tracked())
    second = train(_cfg(episodes=8, **cfg), resume=True, callbacks=tracked())
    assert first["episodes"] == 4 and second["resumed_from_episode"] == 4 and second["episodes"] == 8
    rows = (checkpoints_dir() / "two-runners" / "episodes.csv").read_text().splitlines()
    header = rows[0].split(",")
    workers = [float(r.split(",")[header.index("worker")]) for r in rows[1:]]
    assert sorted(workers) == [1.0] * 4 + [2.0] * 4            # 4 episodes from each runner
    store = np.load(os.path.join(second["policy"], "lad_store.npy"))
    np.testing.assert_allclose(store.sum(1), 1.0, rtol=1e-5)  # still a probability per context
    assert not np.allclose(store, store[0, 0])                  # and learned, not uniform


@pytest.mark.slow
def test_remote_runners_act_with_the_learners_latest_weights(ray_session):
    from policies.registry import algorithm_config

    cfg = algorithm_config("d2sac", {"scenario": "dedgeai", "overrides": TINY, "seed": 0}, num_envs=2,
                           num_env_runners=2, model={"hidden": 32, "critic_hidden": 32}, training=FAST)
    algo = cfg.build_algo()
    try:
        initial = algo.env_runner_group.foreach_env_runner(lambda r: r.module.get_state(), local_env_runner=False)
        for _ in range(4):
            algo.train()
        learner = algo.learner_group._learner.module["default_policy"].get_state(inference_only=True)
        remote = algo.env_runner_group.foreach_env_runner(lambda r: r.module.get_state(), local_env_runner=False)
    finally:
        algo.stop()
    assert algo.sgd_steps > 0 and len(remote) == 2
    shared = [k for k in remote[0] if k in learner]
    assert shared
    for state in remote:
        for k in shared:
            np.testing.assert_array_equal(np.asarray(state[k]), np.asarray(learner[k]))
    assert any(not np.array_equal(initial[0][k], remote[0][k]) for k in shared)   # they did change


@pytest.mark.slow
def test_faithful_multi_agent_form_trains_independent_agents(ray_session):
    from policies.training import train

    result = train(_cfg(scenario_overrides=TINY + ["form=multi-agent"], episodes=2, register_policy=False),
                   callbacks=tracked())
    spec = json.loads(open(os.path.join(result["policy"], "policy_spec.json")).read())
    assert spec["n_agents"] == 4 and spec["form"] == "multi-agent"


@pytest.mark.slow
@pytest.mark.parametrize("form", ["shared", "multi-agent"])
def test_rllib_baseline_counts_episodes(ray_session, form):
    from policies.training import train

    cfg = _cfg(algo="ppo", episodes=3, scenario_overrides=TINY + [f"form={form}"],
               training={"train_batch_size_per_learner": 256, "minibatch_size": 64, "num_epochs": 1})
    result = train(cfg, callbacks=tracked())
    assert result["episodes"] >= 3 and np.isfinite(result["final_mean_delay_s"])
    from policies.tracking import checkpoints_dir
    csv = (checkpoints_dir() / cfg.name() / "episodes.csv").read_text().splitlines()
    assert len(csv) - 1 == 3 and all(row.split(",")[1] for row in csv[1:])   # each with its delay
    delays = [float(row.split(",")[1]) for row in csv[1:]]
    assert all(0 < d < 100 for d in delays)       # a mean delay per decision, not a sum over agents


class _ModuleWeights(TrainingCallbacks):
    """Keeps the learner's weights as train() hands the algorithm over (after any init_from)."""

    def on_algorithm(self, algo):
        module = algo.learner_group._learner.module["default_policy"]
        self.weights = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_ppo_starts_from_a_source_run_with_init_from(ray_session):
    """`aigc-edge train --set init_from=RUN_FOLDER` for RLlib's PPO: the transfer path of the
    baselines (tuning/ refuses pi-reuse for them)."""
    from policies.artifact import MODULE_STATE, read_module_state
    from policies.tracking import checkpoints_dir
    from policies.training import train

    ppo = dict(algo="ppo", episodes=1, scenario_overrides=TINY + ["form=shared"],
               training={"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1})
    source = _cfg(**ppo, run_name="ppo-source")
    train(source)
    folder = checkpoints_dir() / source.name()
    trained = read_module_state(folder / "algo" / "learner_group" / "learner" / "rl_module" / "default_policy"
                                / MODULE_STATE.name)
    started = _ModuleWeights()
    train(_cfg(**ppo, run_name="ppo-init", seed=1, init_from=str(folder)), callbacks=[started])
    assert started.weights.keys() == trained.keys()
    for name, value in trained.items():
        np.testing.assert_array_equal(started.weights[name], value, err_msg=name)
    scratch = _ModuleWeights()
    train(_cfg(**ppo, run_name="ppo-scratch", seed=1), callbacks=[scratch])
    assert any(not np.array_equal(scratch.weights[k], v) for k, v in trained.items())


def test_cli_rejects_an_unknown_field(capsys):
    from cluster.cli import main
    assert main(["train", "--set", "nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_rllib_replay_baselines_train_one_policy_per_bs(ray_session, algo):
    from policies.training import train

    cfg = _cfg(algo=algo, episodes=3, scenario_overrides=TINY + ["form=multi-agent"],
               training={"num_steps_sampled_before_learning_starts": 64})
    result = train(cfg, callbacks=tracked())
    assert result["episodes"] >= 3 and np.isfinite(result["final_mean_delay_s"])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_faithful_rllib_replay_evicts_running_turn_based_episodes(ray_session, algo):
    """RLlib 2.60's multi-agent buffer raised KeyError / ValueError at its first eviction on the
    turn-based env (DQN: ValueError in `_sample_independent` at the second iteration here). A
    buffer smaller than the episodes in flight evicts running ones on every iteration."""
    from policies.registry import algorithm_config
    from policies.baselines.replay import EvictingTurnBasedReplay

    env_config = {"scenario": "dedgeai", "overrides": ["n_bs=4", "slots=100", "max_tasks=6", "form=multi-agent"]}
    cfg = algorithm_config(algo, env_config, num_envs=2, seed=0,
                           training={"num_steps_sampled_before_learning_starts": 64})
    capacity = 1500                                   # an episode is ~1,200 decisions, 2 in flight
    cfg = cfg.training(replay_buffer_config={**cfg.replay_buffer_config, "capacity": capacity})
    algo_ = cfg.build_algo()
    try:
        buffer = algo_.local_replay_buffer
        assert isinstance(buffer, EvictingTurnBasedReplay)
        for _ in range(15):        # decisions per iteration vary (SAC); go on past 3 evictions
            result = algo_.train()
            # RLlib lets the buffer overflow by the newest chunks while one episode is all it holds
            assert buffer.get_num_timesteps() <= capacity + 2 * 256
            if buffer.get_num_episodes_evicted() >= 3:
                break
        assert buffer.get_num_episodes_evicted() >= 3
        losses = [v for m, stats in result["learners"].items() if m.startswith("bs")
                  for k, v in stats.items() if k.endswith("loss")]
        assert losses and np.all(np.isfinite(losses))
        sampled = buffer.sample(num_items=64, beta=0.0)          # independent: 64 per module
        assert sorted({eps.module_id for eps in sampled}) == [f"bs{i}" for i in range(4)]
        assert len(sampled) == 4 * 64
    finally:
        algo_.stop()


@pytest.mark.slow
@pytest.mark.parametrize("algo,form", [("dqn", "multi-agent"), ("sac", "multi-agent"), ("sac", "shared")])
def test_rllib_replay_refills_its_buffer_before_learning_on_resume(ray_session, algo, form, tmp_path):
    """RLlib saves the step counter that starts learning, not the buffer: a restored run learned
    at once from one iteration's decisions and, in the faithful form, DQN crashed on a module
    with none (TypeError in its priority update). It now samples until the buffer is as full as
    a fresh run's was."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    from policies.registry import algorithm_config

    env_config = {"scenario": "dedgeai", "overrides": ["n_bs=4", "slots=20", "max_tasks=6", f"form={form}"]}
    cfg = algorithm_config(algo, env_config, num_envs=2, seed=0,
                           training={"num_steps_sampled_before_learning_starts": 600})

    def sampled(algo_) -> int:
        return algo_.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)

    first = cfg.build_algo()
    try:
        for _ in range(3):                        # 512 decisions per iteration
            first.train()
        first.save_to_path(str(tmp_path))
    finally:
        first.stop()
    resumed = cfg.build_algo()
    try:
        resumed.restore_from_path(str(tmp_path))
        at_restore, sampled_at_update = sampled(resumed), []
        update = resumed.learner_group.update

        def spied_update(*args, **kwargs):        # when do the updates come, after the restore?
            sampled_at_update.append(sampled(resumed) - at_restore)
            return update(*args, **kwargs)

        resumed.learner_group.update = spied_update
        for _ in range(4):
            resumed.train()
        assert sampled_at_update and min(sampled_at_update) >= 600
    finally:
        resumed.stop()


def test_faithful_rllib_replay_holds_the_episodes_in_flight():
    from envs.scenarios import load_scenario, make_core
    from policies.registry import algorithm_config

    per_episode = make_core(load_scenario("dedgeai", ["form=multi-agent"]), 1, 0).mean_episode_decisions()
    for algo in ("dqn", "sac"):
        cfg = algorithm_config(algo, {"scenario": "dedgeai", "overrides": ["form=multi-agent"]}, num_envs=10)
        assert cfg.algo_class.__name__ == f"TurnBased{algo.upper()}"
        assert cfg.replay_buffer_config["capacity"] >= 1.5 * 10 * per_episode
    shared = algorithm_config("sac", {"scenario": "dedgeai"}, num_envs=10)
    assert shared.algo_class.__name__ == "ResumableSAC" and shared.replay_buffer_config["capacity"] == 200_000


def test_faithful_rllib_replay_iterations_run_on_a_frozen_heap():
    """No collection during an iteration, and the one after it skips what existed before it; the
    collector is back as it was after an iteration, even a failed one, and a full collection
    still comes every `full_collection_every`."""
    import gc

    from policies.baselines.replay import TurnBasedDQN, TurnBasedSAC, _FrozenHeapMixin

    class Iteration:
        def __init__(self):
            self.frozen_objects, self.fail = [], False

        def training_step(self):
            self.frozen_objects.append(gc.get_freeze_count())
            self.collecting = gc.isenabled()
            if self.fail:
                raise RuntimeError("iteration failed")

    class Algorithm(_FrozenHeapMixin, Iteration):
        full_collection_every = 3

    algo = Algorithm()
    full_before = gc.get_stats()[2]["collections"]
    for _ in range(6):
        algo.training_step()
    assert min(algo.frozen_objects) > 0 and not algo.collecting
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    assert gc.get_stats()[2]["collections"] >= full_before + 2
    algo.fail = True
    with pytest.raises(RuntimeError):
        algo.training_step()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    algo.fail, algo.freeze_heap = False, False
    algo.training_step()
    assert algo.frozen_objects[-1] == 0 and algo.collecting
    assert issubclass(TurnBasedDQN, _FrozenHeapMixin) and issubclass(TurnBasedSAC, _FrozenHeapMixin)


@pytest.mark.slow
@pytest.mark.parametrize("scenario,form", [("dedgeai", "shared"), ("dedgeai", "multi-agent"),
                                           ("dedgeai-corrected", "shared")])
def test_rllib_runs_finish_the_episodes_the_replay_predicts(ray_session, scenario, form):
    """RLlib's runs have a paired greedy figure only if we know which episodes they played: the
    decisions of every finished episode (its task count) must be those of the replayed one. In
    dedgeai-corrected even the task counts depend on how the envs were stepped."""
    from envs.scenarios import load_scenario
    from policies.tracking import checkpoints_dir
    from policies.catalog import make_policy
    from policies.evaluation import on_rllib_run_episodes
    from policies.training import train

    overrides = ["n_bs=4", "slots=6", "max_tasks=6"] + (["form=multi-agent"] if form == "multi-agent" else [])
    cfg = _cfg(scenario=scenario, algo="ppo", episodes=30, num_envs=3, seed=7, scenario_overrides=overrides,
               training={"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1})
    train(cfg, callbacks=tracked())
    finished = json.loads((checkpoints_dir() / cfg.name() / "run.json").read_text())["episodes"]
    recorded = [e["decisions"] for e in finished]
    assert len(recorded) >= 30 and len(set(recorded)) > 3             # lengths tell episodes apart
    config = load_scenario(scenario, overrides)
    paired = on_rllib_run_episodes(config, make_policy("greedy", config), seed=7, num_envs=3,
                                   episodes=len(recorded), shared_form=form == "shared")
    assert [p["decisions"] for p in paired] == recorded


@pytest.mark.slow
def test_a_resumed_rllib_run_replays_each_part_from_the_first_episode(ray_session):
    """A restored RLlib env runner builds its envs anew, seeded as before: after a resume the run
    plays a fresh run's episodes again, and the replay must pair each part that way."""
    from envs.scenarios import load_scenario
    from policies.tracking import checkpoints_dir
    from policies.catalog import make_policy
    from policies.evaluation import on_rllib_run_episodes
    from policies.training import train

    overrides = ["n_bs=4", "slots=6", "max_tasks=6", "form=multi-agent"]
    kw = dict(algo="ppo", num_envs=3, seed=7, scenario_overrides=overrides, run_name="resume-rllib",
              training={"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1})
    train(_cfg(episodes=12, **kw), callbacks=tracked())
    result = train(_cfg(episodes=30, **kw), resume=True, callbacks=tracked())
    state = json.loads((checkpoints_dir() / "resume-rllib" / "run.json").read_text())
    recorded = [e["decisions"] for e in state["episodes"]]
    assert result["resumed_at"] == state["resumed_at"] and 12 <= state["resumed_at"][0] < len(recorded)
    config = load_scenario("dedgeai", overrides)
    greedy = make_policy("greedy", config)
    paired = on_rllib_run_episodes(config, greedy, seed=7, num_envs=3, episodes=len(recorded),
                                   shared_form=False, resumed_at=state["resumed_at"])
    assert [p["decisions"] for p in paired] == recorded
    unresumed = on_rllib_run_episodes(config, greedy, seed=7, num_envs=3, episodes=len(recorded), shared_form=False)
    assert [p["decisions"] for p in unresumed] != recorded           # the resume is what explains it
    with pytest.raises(ValueError, match="resumed_at"):
        on_rllib_run_episodes(config, greedy, seed=7, num_envs=3, episodes=5, shared_form=False, resumed_at=[9])


def test_whitelisted_metrics_average_the_modules_of_a_multi_agent_run():
    from policies.training import whitelisted_metrics

    multi = {"learners": {"bs0": {"vf_loss": 1.0, "entropy": 2.0}, "bs1": {"vf_loss": 3.0, "entropy": 2.5},
                          "__all_modules__": {"vf_loss": 99.0}}, "time_this_iter_s": 1.5}
    assert whitelisted_metrics(multi) == {"losses/value": 2.0, "charts/entropy": 2.25, "time/iter_s": 1.5}
    single = {"learners": {"default_policy": {"vf_loss": 4.0}, "other": {"vf_loss": 0.0}}}
    assert whitelisted_metrics(single) == {"losses/value": 4.0}


def test_baseline_episode_delay_sums_the_chunks_of_an_episode():
    from policies.baselines import episodes as training

    class Chunk:       # the part of RLlib's episode API the callback reads
        def __init__(self, id_, rewards, done):
            self.id_, self.rewards, self.is_done = id_, rewards, done

        def get_return(self):
            return sum(self.rewards)

        def __len__(self):
            return len(self.rewards)

    callback = training.baseline_callbacks()()
    training.FINISHED_EPISODES.clear()
    callback.on_sample_end(samples=[Chunk("a", [-1.0, -1.0], False), Chunk("b", [-4.0], False)])
    callback.on_sample_end(samples=[Chunk("a", [-10.0], True), Chunk("b", [-2.0], False)])
    assert training.FINISHED_EPISODES == [(-4.0, 3)]     # (-1 - 1 - 10) / 3, not the last chunk's -10
    callback.on_sample_end(samples=[Chunk("b", [-6.0], True)])
    assert training.FINISHED_EPISODES == [(-4.0, 3), (-4.0, 3)] and not callback.open
    training.FINISHED_EPISODES.clear()


@pytest.mark.slow
@pytest.mark.parametrize("kept, cql", [(0.0, 0.0), (0.25, 1.0)])
def test_demonstrations_pretrain_the_actor_to_imitate_them(ray_session, kept, cql):
    """training.demonstrations: the demonstrator acts first; when its decisions are in, the learner
    takes `pretrain_updates` extra SGD steps on them, once (the checkpoint says so). Then the
    actor picks the demonstrator's action (`local`: each task's own BS) on fresh decisions.
    Kept apart (`batch_share`), they stay out of the agent's own buffer; with a conservative
    critic (`cql_weight`) the others' values fall well below the demonstrated action's."""
    import torch
    from ray.rllib.core.columns import Columns

    from envs.scenarios import load_scenario, make_core
    from policies.registry import algorithm_config
    from policies.sac.module import AGENT, DEFAULT_MODULE_CONFIG, PRIOR

    overrides = TINY + ["form=shared"]
    training = dict(FAST, demonstrations=dict(policy="local", decisions=200, pretrain_updates=300,
                                              batch_share=kept, cql_weight=cql))
    cfg = algorithm_config("sac-mlp", {"scenario": "dedgeai-corrected", "overrides": overrides, "seed": 3},
                           num_envs=2, seed=3, training=training, model={"hidden": 32, "critic_hidden": 32})
    algo = cfg.build_algo()
    try:
        initial_alpha = DEFAULT_MODULE_CONFIG["initial_alpha"]
        demonstrations = algo.extensions[0]
        while not demonstrations.pretrained:
            before = algo.sgd_steps
            result = algo.train()
        assert algo.decisions >= 200 and algo.sgd_steps - before >= 300
        # the temperature learns from the agent's own transitions only: none yet
        alpha = result["learners"]["default_policy"]["charts/alpha"]
        assert alpha == pytest.approx(initial_alpha, rel=1e-6)
        before = algo.sgd_steps
        algo.train()
        assert 0 < algo.sgd_steps - before < 300                # pre-trained once only
        if kept:
            kept_demos, own = algo.replay.kept, algo.replay.own
            n_kept, n_own = int(kept_demos.size[0]), int(own.size[0])
            assert n_kept > 100 and kept_demos.by_source[0, :n_kept].all()
            assert n_own > 0 and not own.by_source[0, :n_own].any()
        assert algo.get_state()["edge"]["extensions"]["demonstrations"] == {"pretrained": True}

        core = make_core(load_scenario("dedgeai-corrected", overrides), num_envs=64, seed=9)
        obs = core.observe()
        module = algo.env_runner_group.local_env_runner.module
        with torch.no_grad():
            logits = module._forward_exploration({
                Columns.OBS: torch.from_numpy(obs), AGENT: torch.zeros(len(obs), dtype=torch.long),
                PRIOR: torch.full((len(obs), core.encoding.n), 1.0 / core.encoding.n)})[Columns.ACTION_DIST_INPUTS]
        own_bs = core.layout.field(obs, "bs_onehot").argmax(1)
        agreement = float((logits.argmax(1).numpy() == own_bs).mean())
        assert agreement >= 0.9, f"the actor imitates the demonstrator on only {agreement:.0%} of decisions"
        if cql:
            learner_module = algo.learner_group._learner.module["default_policy"]
            with torch.no_grad():
                q1, _ = learner_module.q_values(torch.from_numpy(obs))
            # logsumexp over actions minus the demonstrated action's value: log 4 = 1.39 when the
            # values are level (1.37 measured without the term), 0 when it alone has value
            gap = float((torch.logsumexp(q1, 1) - q1[torch.arange(len(obs)), torch.from_numpy(own_bs)]).mean())
            assert gap < 0.3, f"the critic still values the actions never demonstrated: CQL gap {gap:.2f}"
    finally:
        algo.stop()
