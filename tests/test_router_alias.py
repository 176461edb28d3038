"""The learned router follows its MLflow registry alias: a new version registered under load is
taken with no dropped request, and a version that does not load leaves the old one serving.

A real MLflow SQLite store in a temporary folder; the first tests drive `RoutingDecider` and
`AliasFollower` without Ray, the last one runs real Ray Serve and real HTTP (httpx) like
tests/test_serving_app.py (one Ray session for the module, fractional CPUs, shut down after).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from envs.config import ConfigError
from envs.topology import load_topology
from serving.app.routing import DEFAULT_POLICY, AliasFollower, RoutingDecider, scenario_config

ROOT = Path(__file__).resolve().parents[1]
# The shipped policy's action encoding (nodes fast, slow, remote; every plan), one replica each.
TOPOLOGY = """
name: alias-test
nodes:
  - {name: fast, replicas: 1, speed: 0.5, max_ongoing: 2, max_queued: 8}
  - {name: slow, replicas: 1, speed: 0.25, max_ongoing: 2, max_queued: 8}
  - {name: remote, replicas: 1, speed: 0.5, link: {rtt_ms: 60.0, mbit_s: 10.0}, max_ongoing: 2, max_queued: 8}
slo: {deadline_s: 3.0}
workload: {steps: [2, 4]}
"""


def load_bench():
    spec = importlib.util.spec_from_file_location("serve_swap", ROOT / "benchmarks" / "serve_swap.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                   # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A registry of this module's own; `register(folder, scenario)` -> the new champion's version."""
    home = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{home / 'mlflow.db'}"

    def register(folder, scenario="serve-sim", run_name="alias-test") -> str:
        import mlflow

        with pytest.MonkeyPatch.context() as mp:       # policies.tracking reads the store from the environment
            mp.setenv("AIGC_EDGE_HOME", str(home))
            mp.setenv("MLFLOW_TRACKING_URI", uri)
            try:
                return bench.register_artifact(folder, run_name, scenario)
            finally:
                # configure_mlflow made it this process's store: undone, so the router reads it
                # through its own settings only (as a replica does)
                mlflow.set_tracking_uri(None)
    return uri, register


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self, text: str) -> int:
        return sum(text in r.getMessage() for r in self.records if r.levelno >= logging.WARNING)


@pytest.fixture
def router_log():
    """What the follower logs to "ray.serve" (which need not propagate once Serve configured it)."""
    logger, handler = logging.getLogger("ray.serve"), Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def another_topologys_artifact(tmp_path) -> Path:
    """The shipped artifact, relabelled as trained for nodes a/b/c: the router must refuse it."""
    bad = tmp_path / "other-topology"
    shutil.copytree(DEFAULT_POLICY, bad)
    spec = json.loads((bad / "policy_spec.json").read_text())
    spec["action_encoding"]["targets"] = ["a", "b", "c"]
    (bad / "policy_spec.json").write_text(json.dumps(spec))
    return bad


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_an_alias_is_pinned_to_its_version_and_followed(store, tmp_path, router_log):
    uri, register = store
    name = "serve-sim-follow"                       # a model of this test's own
    assert register(DEFAULT_POLICY, name) == "1"
    decider = RoutingDecider(load_topology(), scenario_config(None))
    spec = f"models:/aigc-edge-policy-{name}@champion"
    active = decider.use("learned", spec, tracking_uri=uri)
    assert (active.spec, active.model_version, active.version) == (spec, "1", 1)
    assert type(active.policy).__name__ == "NumpyPerActionPolicy"     # no PyTorch in the Router
    follower = AliasFollower(decider, active, 0, uri, period_s=0.1)
    assert follower.check() is False                 # the alias still names version 1

    assert register(DEFAULT_POLICY, name) == "2"
    assert follower.check() is True
    assert (decider.active.model_version, decider.active.version) == ("2", 2)

    # a version that cannot load (another topology's artifact): refused, version 2 keeps deciding
    assert register(another_topologys_artifact(tmp_path), name) == "3"
    with pytest.raises(ConfigError, match="does not fit this topology"):
        follower.check()
    assert decider.active.model_version == "2"
    follower.start()
    try:
        assert wait_for(lambda: router_log.warnings("does not fit this topology") == 1, 5.0)
        assert decider.active.model_version == "2" and decider.decide(4, 3.0).policy.model_version == "2"
        assert register(DEFAULT_POLICY, name) == "4"     # fixed: the thread takes it
        assert wait_for(lambda: decider.active.model_version == "4", 10.0)

        # a reconfigure to another policy ends the follower by itself, and it never swaps back
        decider.use("greedy", None)
        assert wait_for(lambda: not follower.thread.is_alive(), 5.0)
        assert decider.active.router == "greedy" and decider.active.model_version is None
    finally:
        follower.stop()


def test_an_unreachable_registry_is_logged_and_the_policy_keeps_serving(store, tmp_path, router_log):
    uri, register = store
    name = "serve-sim-unreachable"
    register(DEFAULT_POLICY, name)
    decider = RoutingDecider(load_topology(), scenario_config(None))
    active = decider.use("learned", f"models:/aigc-edge-policy-{name}@champion", tracking_uri=uri)
    (tmp_path / "a-file").write_text("")
    gone = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"         # no database can be opened there
    follower = AliasFollower(decider, active, 0, gone, period_s=0.1).start()
    try:
        assert wait_for(lambda: router_log.warnings("could not resolve or load") == 1, 10.0)
        time.sleep(0.5)                                 # more failed looks: no more warnings
        assert follower.thread.is_alive() and decider.active is active
        assert decider.decide(2, 3.0).policy is active
    finally:
        follower.stop()
    assert not follower.thread.is_alive()
    assert router_log.warnings("could not resolve or load") == 1      # one per streak, not one per look


def test_follow_alias_s_is_validated_and_the_store_is_the_deployers(monkeypatch):
    from serving.app.config import RouterSettings

    assert RouterSettings().follow_alias_s == 10.0
    for bad in (-1.0, 0.05, 3601.0):
        with pytest.raises(ValueError, match="follow_alias_s"):
            RouterSettings(follow_alias_s=bad)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    settings = RouterSettings(router="learned", policy="models:/aigc-edge-policy-serve-sim@champion")
    assert settings.tracking_uri == "http://mlflow.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # the replica validates what the driver wrote: the driver's store, not its own environment's
    assert RouterSettings.model_validate(settings.model_dump(mode="json")).tracking_uri == "http://mlflow.example:5000"
    assert RouterSettings(router="greedy").tracking_uri is None


@pytest.fixture(scope="module")
def app(tmp_path_factory, store):
    """The endpoint on the learned router, its policy models:/aigc-edge-policy-serve-sim@champion
    (version 1: the shipped artifact), following the alias every 0.5 s."""
    import ray
    from ray import serve

    from serving.app.config import RouterSettings, ServeAppConfig
    from serving.app.deploy import deploy

    uri, register = store
    topo = tmp_path_factory.mktemp("topology") / "alias.yaml"
    topo.write_text(TOPOLOGY)
    # RAY_AUTH_MODE as the environment has it, as tests/test_serving_app.py explains. Ray starts
    # before the store is known: the replicas' environment does not name it, the settings do.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert register(DEFAULT_POLICY, run_name="v1") == "1"
        routing = RouterSettings(router="learned", policy="models:/aigc-edge-policy-serve-sim@champion",
                                 follow_alias_s=0.5, tracking_uri=uri)
        cfg = ServeAppConfig(topology=str(topo), port=free_port(), node_num_cpus=0.25, router_num_cpus=0.25,
                             routing=routing)
        url = deploy(cfg, timeout_s=240)
        yield url, cfg
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.mark.slow
def test_a_version_registered_under_load_is_served_with_no_dropped_request(app, store):
    import asyncio

    from serving.app.config import RouterSettings
    from serving.app.deploy import replica_details, swap_policy

    url, cfg = app
    uri, register = store
    health = httpx.get(f"{url}/healthz").json()
    assert (health["model_version"], health["policy_version"]) == ("1", 1), health
    before = {d: sorted(r["replica_id"] for r in reps) for d, reps in replica_details().items()}

    # 20 requests at 2/s; 3 s in, version 2 (the same artifact, logged again in a new run) takes the alias
    s = asyncio.run(bench.swap_under_load(url, 20, 2.0, 3.0, lambda: register(DEFAULT_POLICY, run_name="v2"),
                                          steps=[2, 4], deadline_s=20.0, seed=3))
    answers = s["answers"]
    assert s["failed"] == 0 and s["completed"] == 20, s["status_counts"]
    assert s["new_version"] == "2" and [v for v, _ in s["versions_in_order"]] == ["1", "2"], s["versions_in_order"]
    # answered before the alias moved: version 1; sent after the first version-2 answer: version 2
    assert all(a["model_version"] == "1" for a in answers if a["done_s"] < s["alias_moved_at_s"])
    first_v2 = s["first_new_version_answer_s"]
    assert all(a["model_version"] == "2" for a in answers if a["scheduled_s"] > first_v2)
    assert s["alias_move_to_first_new_answer_s"] < 10.0, s
    health = httpx.get(f"{url}/healthz").json()
    assert (health["model_version"], health["policy_version"]) == ("2", 2), health
    nodes = httpx.get(f"{url}/v1/nodes").json()
    assert nodes["model_version"] == "2"
    j = httpx.post(f"{url}/v1/generate", json={"label": 1, "steps": 2, "format": "json"}, timeout=30).json()
    assert j["decision"]["model_version"] == "2" and j["decision"]["policy"] == cfg.routing.policy
    assert {d: sorted(r["replica_id"] for r in reps) for d, reps in replica_details().items()} == before

    # reconfigured to a heuristic, the Router follows the alias no more: version 3 is not taken
    cfg = swap_policy(cfg, RouterSettings(router="greedy"))
    register(DEFAULT_POLICY, run_name="v3")
    time.sleep(2.0)
    health = httpx.get(f"{url}/healthz").json()
    assert (health["router"], health["model_version"], health["policy_version"]) == ("greedy", None, 3), health
