"""The serving topology schema and the serve-sim scenario built from it."""
from __future__ import annotations

import numpy as np
import pytest

from envs.config import ConfigError
from envs.scenarios import load_scenario, make_core
from envs.serve_sim import NodeView
from envs.topology import load_topology
from policies.catalog import make_policy
from policies.evaluation import run_episodes


def test_default_topology_is_heterogeneous():
    topo = load_topology()
    speeds = {n.name: n.speed for n in topo.nodes}
    assert len(set(speeds.values())) > 1
    assert max(n.link.rtt_ms for n in topo.nodes) > 10 * min(n.link.rtt_ms for n in topo.nodes)


def test_topology_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"nodes.0.speed"):
        load_topology(None, ["nodes=[{name: a, speed: 3}]"])
    path = tmp_path / "t.yaml"
    path.write_text("nodes: [{name: a, speed: 0.5}, {name: a, speed: 0.2}]\n")
    with pytest.raises(ConfigError, match="unique"):
        load_topology(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_topology(tmp_path / "missing.yaml")


def test_serve_sim_is_seeded_and_actions_cover_nodes_and_plans():
    cfg = load_scenario("serve-sim")
    a, b = make_core(cfg, 3, seed=5), make_core(cfg, 3, seed=5)
    assert a.encoding.targets == ("fast", "slow", "remote") and "full" in a.encoding.plans
    for _ in range(50):
        act = np.random.default_rng(0).integers(0, a.encoding.n, size=3)
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra.delay_s, rb.delay_s)
    np.testing.assert_array_equal(a.observe(), b.observe())


def test_observation_is_the_routers_function_of_node_state():
    core = make_core(load_scenario("serve-sim", ["compute_noise=0"]), 1, seed=0)
    t = core.tables
    view = NodeView(inflight=np.array([[3.0, 0.0, 0.0]]), backlog_s=np.array([[1.2, 0.0, 0.0]]),
                    replicas=np.array([[2.0, 2.0, 1.0]]))
    obs = t.observe(np.array([10]), np.array([2.5]), view)
    wait = t.layout.field(obs, "wait_s")[0]
    assert wait[0] == pytest.approx(0.6) and wait[t.n_plans] == 0.0     # backlog / replicas when busy
    est = t.layout.field(obs, "estimate_s")[0]
    np.testing.assert_allclose(est, t.estimate_s(np.array([10]), view)[0], rtol=1e-6)
    # the simulator's own observation is the same function of its state
    np.testing.assert_allclose(core.observe(), t.observe(core.steps, np.array([t.deadline_s]), core.node_view()))


def test_full_nodes_push_back_and_a_request_goes_elsewhere():
    cfg = load_scenario("serve-sim", ["load=[5.0, 5.0]", "compute_noise=0"])
    core = make_core(cfg, 1, seed=0)
    slow = core.encoding.targets.index("slow") * len(core.encoding.plans) + core.encoding.plans.index("full")
    rejected = 0
    for _ in range(40):
        result = core.step(np.array([slow]))
        rejected += int(result.quality[0] == 0)
    view = core.node_view()
    assert view.inflight[0].max() <= core.tables.capacity.max()
    assert view.inflight[0, 0] > 0            # overflow went to another node


def test_heuristics_run_on_serve_sim_and_greedy_is_best():
    cfg = load_scenario("serve-sim")
    delays = {}
    for name in ("greedy", "least-loaded", "round-robin", "random"):
        log = run_episodes(cfg, make_policy(name, cfg, 0), 8, seed=1)
        delays[name] = float(np.concatenate(log.delays).mean())
    assert delays["greedy"] < delays["least-loaded"] < delays["round-robin"]
