"""`aigc-edge bench policy`: decision latency of the diffusion actor on one thread.

Times the full decision of a `DiffusionPolicy` (observation scaling, I reverse steps of the
chain, softmax, argmax) as the router and the evaluator call it, at batch 1 and batch 1024, for
the LAD actor of the `dedgeai` shared form (the median of repeated calls). Targets: batch 1 at
most 1 ms, batch 1024 at most 10 ms.
"""
from __future__ import annotations

import time

import numpy as np
import torch


def _median_ms(fn, seconds: float) -> float:
    fn()  # warm up
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _policy(scenario: str, spec: str | None):
    from envs.scenarios import load_scenario, make_core
    from policies.artifact import DiffusionPolicy, describe, load_policy
    from policies.diffusion import DiffusionActor
    from policies.sac.module import DEFAULT_MODULE_CONFIG

    config = load_scenario(scenario)
    if spec:
        return load_policy(spec, config), config
    core = make_core(config, 1, 0)
    cfg = {**DEFAULT_MODULE_CONFIG, "start": "prior"}
    actor = DiffusionActor(core.layout.dim, core.encoding.n, hidden=cfg["hidden"],
                           steps=cfg["diffusion_steps"])
    meta = {**describe(config, core), "n_agents": 1, "n_actions": core.encoding.n,
            "model_config": cfg, "algorithm": "lad"}
    store = np.full((core.num_context_keys, core.encoding.n), 1.0 / core.encoding.n, np.float32)
    return DiffusionPolicy(actor, torch.as_tensor(core.layout.scales()), meta, store, "lad"), config


def bench_policy(args) -> dict:
    torch.set_num_threads(1)
    scenario = getattr(args, "scenario", None) or "dedgeai"
    seconds = float(getattr(args, "seconds", 2.0) or 2.0)
    policy, config = _policy(scenario, getattr(args, "policy", None))
    from envs.scenarios import make_core

    out = {"scenario": scenario, "threads": torch.get_num_threads(),
           "diffusion_steps": int(getattr(policy.actor, "steps", 0))}
    for batch in (1, 1024):
        core = make_core(config, batch, 0)
        obs, state = core.observe(), core.network_state()    # the state carries LAD's context key
        out[f"batch{batch}_ms"] = round(_median_ms(lambda: policy.decide(obs, state), seconds / 2), 4)
    out["batch1024_decisions_per_s"] = round(1024 / (out["batch1024_ms"] / 1000.0))
    return out
