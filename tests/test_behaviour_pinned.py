"""Behaviour pinned before `policies/` was restructured (issue 16): the same seed must give the
same episodes and the same losses after it.

Each case builds the algorithm on a tiny dedgeai with seed 3, runs 8 iterations, and compares the
first episodes' mean delays and every iteration's critic and actor losses with the figures the
code at e63b2d8 produced (recorded by running this very procedure there, twice, identically).
One case per research option that moved behind an extension hook (demonstrations, hindsight
credit), and the multi-agent form.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

NAN = math.nan
TINY = ["n_bs=4", "slots=4", "max_tasks=6"]
FAST = {"rollout_decisions": 40, "decisions_per_update": 10, "minibatch_per_agent": 32,
        "learning_starts": 64, "replay_capacity": 5000}
CASES = {
    "lad": dict(algo="lad", overrides=TINY, training={}, model={}),
    "d2sac": dict(algo="d2sac", overrides=TINY, training={}, model={}),
    "lad-multi-agent": dict(algo="lad", overrides=TINY + ["form=multi-agent"], training={}, model={}),
    "sac-mlp-per-action-credit": dict(algo="sac-mlp", overrides=TINY + ["mode=corrected"],
                                      training={"hindsight_credit": {"share": 1.0, "horizon": 1}},
                                      model={"network": "per-action"}),
    "d2sac-demos": dict(algo="d2sac", overrides=TINY,
                        training={"demonstrations": {"policy": "local", "decisions": 120, "pretrain_updates": 20,
                                                     "batch_share": 0.25, "cql_weight": 1.0}}, model={}),
}
PINNED = {
    'lad': {
        'delays': [0.125366969, 0.155542789, 0.180826916, 0.220592711, 0.154901986, 0.133125422],
        'losses': [[NAN, NAN], [0.009552587755024433, 0.03280835598707199], [0.005256330128759146, 0.02029479667544365], [0.0038285707123577595, 0.009114968590438366], [0.002354472177103162, 0.0020046583376824856], [0.001510576345026493, -0.01052880473434925], [0.0009849437046796083, -0.007562045939266682], [0.000947816064581275, -0.01230846531689167]],
        'decisions': 320, 'sgd_steps': 28},
    'd2sac': {
        'delays': [0.136440046, 0.147381411, 0.159762527, 0.19943091, 0.139750089, 0.150967884],
        'losses': [[NAN, NAN], [0.008380848914384842, 0.02573976293206215], [0.004452127031981945, 0.01694679632782936], [0.003348349127918482, 0.002423353958874941], [0.0018948949873447418, -0.00712933111935854], [0.0018539339071139693, -0.011083069257438183], [0.0007488724077120423, -0.00791064091026783], [0.0008361764485016465, -0.008763626217842102]],
        'decisions': 320, 'sgd_steps': 28},
    'lad-multi-agent': {
        'delays': [0.13505018, 0.143521347, 0.166179963, 0.213787783, 0.178412031, 0.132523896],
        'losses': [[NAN, NAN], [NAN, NAN], [NAN, NAN], [0.009898299351334572, -0.012956546619534492], [0.00645101722329855, -0.02273763343691826], [0.004174965433776379, -0.029803989455103874], [0.0025928043760359287, -0.032631926238536835], [0.001320515526458621, -0.03288326412439346]],
        'decisions': 320, 'sgd_steps': 20},
    'sac-mlp-per-action-credit': {
        'delays': [0.136079978, 0.159486621, 0.154553891, 0.149822639, 0.13590602],
        'losses': [[NAN, NAN], [0.0015645385719835758, 0.0006907670758664608], [0.0004392289265524596, -0.018561270087957382], [0.000830397941172123, -0.01035624835640192], [0.0005854737246409059, -0.023763347417116165], [0.00022193454788066447, -0.03879708796739578], [0.00027631220291368663, -0.03295470029115677], [0.0002043695276370272, -0.02577408030629158]],
        'decisions': 320, 'sgd_steps': 28},
    'd2sac-demos': {
        'delays': [0.14486143, 0.13357681, 0.186097432, 0.152015079, 0.183628363, 0.161797639],
        'losses': [[NAN, NAN], [2.7958765029907227, 1.8514657020568848], [2.648883581161499, 1.7382436990737915], [0.6794971823692322, 0.4646241366863251], [0.6479107737541199, 0.48571133613586426], [0.6449244022369385, 0.48395997285842896], [0.6616101861000061, 0.3525736331939697], [0.6820178627967834, 0.5468382835388184]],
        'decisions': 320, 'sgd_steps': 48},
}


@pytest.fixture(scope="module")
def ray_session():
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_episodes_and_losses_as_before_the_restructuring(ray_session, case):
    import torch

    from policies.registry import algorithm_config

    torch.set_num_threads(1)
    c, want = CASES[case], PINNED[case]
    cfg = algorithm_config(c["algo"], {"scenario": "dedgeai", "overrides": c["overrides"], "seed": 3},
                           num_envs=2, seed=3, training={**FAST, **c["training"]},
                           model={"hidden": 32, "critic_hidden": 32, **c["model"]})
    algo = cfg.build_algo()
    try:
        losses = []
        for _ in range(8):
            learner = algo.train().get("learners", {}).get("default_policy", {})
            losses.append([float(learner.get("losses/critic", NAN)), float(learner.get("losses/actor", NAN))])
        delays = [float(e["mean_delay_s"]) for e in algo.episodes[:6]]
        assert (algo.decisions, algo.sgd_steps) == (want["decisions"], want["sgd_steps"])
        np.testing.assert_allclose(delays, want["delays"], rtol=1e-7)
        np.testing.assert_allclose(losses, want["losses"], rtol=1e-5, equal_nan=True)
    finally:
        algo.stop()
