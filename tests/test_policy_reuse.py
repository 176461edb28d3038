"""Policy reuse and weight initialisation (policies/extensions/policy_reuse.py, init_from),
the experiment grid and the transfer CLI's refusals."""
from types import SimpleNamespace

import numpy as np
import pytest

from envs.config import ConfigError
from policies.extensions.policy_reuse import PolicyReuseOptions, ReusedPolicy, reuse_probability
from policies.callbacks import TrainingCallbacks
from tuning.experiment import ExperimentConfig

TINY = {"rollout_decisions": 256, "learning_starts": 256, "decisions_per_update": 16}


def test_psi_decays_per_decision_and_resets_per_episode():
    o = PolicyReuseOptions(source="x", psi=0.8, upsilon=0.5)
    assert np.allclose(reuse_probability(o, np.array([0, 1, 2]), np.array([1, 1, 1])), [0.8, 0.4, 0.2])
    assert np.allclose(reuse_probability(o, np.array([0, 0]), np.array([1, 7])), [0.8, 0.8])   # reset
    decaying = PolicyReuseOptions(source="x", psi=1.0, upsilon=1.0, episode_decay=0.5)
    assert np.allclose(reuse_probability(decaying, np.array([0, 0, 0]), np.array([1, 2, 3])), [1, 0.5, 0.25])


class _Fixed:
    def __init__(self, action):
        self.action = action

    def decide(self, obs, state=None):
        return np.full(len(obs), self.action)


def _runner(rows: int, ep_len: int):
    core = SimpleNamespace(network_state=lambda: None)
    return SimpleNamespace(worker_index=0, core=core, ep_len=np.full(rows, ep_len), ep_start=np.ones(rows, int))


@pytest.mark.parametrize("psi, reused", [(1.0, True), (0.0, False)])
def test_reused_policy_acts_with_probability_psi(psi, reused):
    source = ReusedPolicy(PolicyReuseOptions(source="x", psi=psi, upsilon=1.0), _Fixed(3), _runner(6, 0))
    live = np.array([0, 2, 5])
    actions, by_source = source.decide(np.zeros((6, 4)), live, lambda: np.zeros(3, np.int64))
    assert by_source.tolist() == [reused] * 3
    assert actions.tolist() == ([3] * 3 if reused else [0] * 3)


def test_late_decisions_are_the_learners():
    source = ReusedPolicy(PolicyReuseOptions(source="x", psi=1.0, upsilon=0.9), _Fixed(3), _runner(400, 300))
    _, by_source = source.decide(np.zeros((400, 4)), np.arange(400), lambda: np.zeros(400, np.int64))
    assert by_source.mean() < 0.01                    # 0.9^300 ~ 2e-14


def test_the_grid_runs_scratch_once_per_target():
    exp = ExperimentConfig(name="g", pairs=[{"source": "urban", "target": "peak"},
                                            {"source": "rural", "target": "peak"}], seeds=[0, 1])
    cells = exp.cells()
    assert sum(c["mode"] == "none" for c in cells) == 1
    assert len(cells) == 1 + 2 * 3
    assert exp.sources() == ["urban", "rural"]


def test_experiment_errors_name_the_field():
    with pytest.raises(ValueError, match="seeds"):
        ExperimentConfig(name="g", pairs=[{"source": "urban", "target": "peak"}], seeds=[1, 1])
    with pytest.raises(ValueError, match="ppo"):
        ExperimentConfig(name="g", algo="ppo", pairs=[{"source": "urban", "target": "peak"}])
    with pytest.raises(ValueError, match="modes"):
        ExperimentConfig(name="g", pairs=[{"source": "urban", "target": "peak"}], modes=["reuse-all"])
    with pytest.raises(ConfigError, match=r"pairs\[0\].target"):
        ExperimentConfig(name="g", pairs=[{"source": "urban", "target": "nowhere"}]).check_families()


def test_cli_refuses_pi_reuse_for_ppo(capsys):
    from cluster.cli import main

    code = main(["transfer", "--source", "urban", "--target", "peak", "--algo", "ppo", "--reuse", "pi-reuse"])
    assert code == 2
    err = capsys.readouterr().err
    assert "pi-reuse" in err and "off-policy" in err and "--reuse init" in err


def test_user_yaml_family(tmp_path):
    from tuning.families import resolve_family

    path = tmp_path / "my-network.yaml"
    path.write_text("scenario: collab-exit\nfamily: urban\ntasks:\n  arrival_rate: 0.8\n")
    family = resolve_family(str(path))
    assert family.slug == "my-network" and family.config().tasks.arrival_rate == 0.8
    path.write_text("scenario: collab-exit\ntasks:\n  arrival_rate: -1\n")
    with pytest.raises(ConfigError, match="arrival_rate"):
        resolve_family(str(path), "--target")


# ---- with Ray: a real source, its weights and actions reused -----------------------------------
@pytest.fixture(scope="module")
def ray_session():
    from cluster.connect import connect

    ray = connect(num_cpus=1)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def source_run(ray_session, tmp_path_factory):
    from policies.training import TrainConfig, train

    root = tmp_path_factory.mktemp("sources")
    cfg = TrainConfig(scenario="collab-exit/urban", algo="lad", episodes=2, num_envs=2, seed=3,
                      training=TINY, register_policy=False, run_name="urban")
    train(cfg, run_root=root)
    return root / "urban"


class _Grab(TrainingCallbacks):
    def on_algorithm(self, algo):
        module = algo.learner_group._learner.module["default_policy"]
        self.weights = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        self.sample = algo.env_runner.sample(num_timesteps=64, source=algo._acting_source())


@pytest.mark.slow
def test_init_from_loads_the_source_weights(source_run, tmp_path):
    from policies.artifact import MODULE_STATE, read_module_state
    from policies.training import TrainConfig, train

    source = read_module_state(source_run / "policy" / MODULE_STATE)
    grab = _Grab()
    cfg = TrainConfig(scenario="collab-exit/peak", algo="lad", episodes=1, num_envs=2, seed=0,
                      training=TINY, register_policy=False, init_from=str(source_run), run_name="init")
    train(cfg, callbacks=[grab], run_root=tmp_path)
    assert grab.weights.keys() == source.keys()
    for name, value in source.items():
        np.testing.assert_array_equal(grab.weights[name], value, err_msg=name)
    scratch = _Grab()
    train(cfg.model_copy(update={"init_from": None, "run_name": "scratch"}), callbacks=[scratch], run_root=tmp_path)
    assert any(not np.array_equal(scratch.weights[k], source[k]) for k in source if k.startswith("actor."))


@pytest.mark.slow
def test_pi_reuse_acts_with_the_source(source_run, tmp_path):
    from policies.training import TrainConfig, train

    grab = _Grab()
    reuse = {"source": str(source_run), "psi": 1.0, "upsilon": 1.0}
    cfg = TrainConfig(scenario="collab-exit/peak", algo="lad", episodes=1, num_envs=2, seed=0,
                      training={**TINY, "policy_reuse": reuse}, register_policy=False, run_name="reuse")
    train(cfg, callbacks=[grab], run_root=tmp_path)
    assert grab.sample["by_source"].all()               # psi = 1 throughout: every action is the source's


def test_a_policy_transfers_between_families_only(source_run):
    from envs.scenarios import load_scenario
    from policies.artifact import PolicySpecMismatch, load_policy

    peak = load_scenario("collab-exit/peak")
    with pytest.raises(PolicySpecMismatch, match="scenario"):
        load_policy(str(source_run), peak)
    from envs.scenarios import make_core
    core = make_core(peak, 2, 0)
    assert load_policy(str(source_run), peak, transfer=True).decide(core.observe(), core.network_state()).shape == (2,)
    with pytest.raises(PolicySpecMismatch):
        load_policy(str(source_run), load_scenario("dedgeai"), transfer=True)


def test_a_search_space_key_must_be_a_training_field(tmp_path):
    from tuning.search import check_space

    def exp(space):
        return ExperimentConfig(name="s", search={"target": "peak", "space": space})

    check_space(exp({"training.actor_lr": {"loguniform": [1e-4, 1e-3]}, "model.hidden": {"choice": [32]}}), tmp_path)
    with pytest.raises(ConfigError, match="search.space"):
        check_space(exp({"training.actor_lrr": {"uniform": [0.1, 0.2]}}), tmp_path)
    with pytest.raises(ValueError, match="low > 0"):
        exp({"training.actor_lr": {"loguniform": [0.0, 1e-3]}})
