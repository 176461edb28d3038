"""The application graph in one place: one EdgeNode deployment per node type, bound into the Router.

`serve run serving.app.build:build_app topology=...` and the shipped Serve config file
(serving/serve_config.yaml, `serve deploy`) both call `build_app(args)`.
"""
from __future__ import annotations

from ray.serve import Application

from envs.topology import load_topology
from serving.app.config import ServeAppConfig
from serving.app.node import EdgeNode
from serving.app.router import Router


# One compute thread per replica and few malloc arenas: replicas share two cores and memory.
NODE_ENV = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}


def node_deployment_name(node: str) -> str:
    return f"EdgeNode-{node}"


def build_app(args: dict | None = None) -> Application:
    """`args`: fields of ServeAppConfig (topology, model_dir, node_num_cpus, ...)."""
    cfg = args if isinstance(args, ServeAppConfig) else ServeAppConfig.model_validate(args or {})
    topology = load_topology(cfg.topology, cfg.topology_overrides)
    topo = topology.model_dump(mode="json")
    nodes = {}
    for node in topology.nodes:
        nodes[node.name] = EdgeNode.options(
            name=node_deployment_name(node.name), num_replicas=node.replicas,
            max_ongoing_requests=node.max_ongoing, max_queued_requests=node.max_queued,
            ray_actor_options={"num_cpus": cfg.node_num_cpus, "runtime_env": {"env_vars": NODE_ENV}},
        ).bind(node.name, topo, cfg.model_dir, cfg.seed)
    return Router.options(
        ray_actor_options={"num_cpus": cfg.router_num_cpus},
        user_config=cfg.routing.model_dump(mode="json"),
    ).bind(nodes, topo, cfg.topology, cfg.topology_overrides, cfg.max_body_bytes, cfg.retry_after_s)
