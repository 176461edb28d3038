"""Deploy the app through Serve's config-file path, the one `serve deploy FILE` takes.

`serve.run()` gives every call a new code version, so even a user_config-only change restarts
every replica; the config-file path (`client.deploy_apps(ServeDeploySchema)`, what `serve deploy`
and the REST API do) calls `reconfigure` on the live Router instead. So `aigc-edge serve` and the
hot swap both go through `deploy_document` + `deploy`.
"""
from __future__ import annotations

import time
from pathlib import Path

from envs.config import ConfigError, load_yaml
from serving.app.config import APP_NAME, SERVE_CONFIG_PATH, RouterSettings, ServeAppConfig

IMPORT_PATH = "serving.app.build:build_app"


def deploy_document(cfg: ServeAppConfig) -> dict:
    """The Serve config (what `serve deploy` reads) of `cfg`: loopback HTTP, the Router's user_config."""
    args = cfg.model_dump(mode="json", exclude={"routing", "host", "port"})
    return {"proxy_location": "HeadOnly",
            "http_options": {"host": cfg.host, "port": cfg.port},
            "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH, "args": args,
                              "deployments": [{"name": "Router",
                                               "user_config": cfg.routing.model_dump(mode="json")}]}]}


def shipped_document(path: str | Path = SERVE_CONFIG_PATH) -> dict:
    return load_yaml(Path(path).read_text())


def start_http(cfg: ServeAppConfig) -> None:
    """Start Serve's proxy on cfg.host:cfg.port (http_options are applied only when Serve starts)."""
    from ray import serve

    serve.start(http_options={"host": cfg.host, "port": cfg.port})


def deploy(cfg: ServeAppConfig, timeout_s: float = 300.0, log=None) -> str:
    """Deploy (or update) the app on the connected Ray and wait until it runs; returns its URL."""
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    start_http(cfg)
    client = serve.context._get_global_client()
    client.deploy_apps(ServeDeploySchema.model_validate(deploy_document(cfg)))
    wait_running(timeout_s, log)
    return f"http://{cfg.host}:{cfg.port}"


def wait_running(timeout_s: float = 300.0, log=None) -> None:
    from ray import serve

    started, last = time.monotonic(), None
    while time.monotonic() - started < timeout_s:
        app = serve.status().applications.get(APP_NAME)
        status = getattr(app, "status", None)
        if status != last and log:
            log(f"app {APP_NAME}: {status}")
        last = status
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise ConfigError(f"app {APP_NAME} failed to deploy: {app.message}")
        time.sleep(0.5)
    raise TimeoutError(f"app {APP_NAME} not running after {timeout_s:.0f} s (last status {last})")


def swap_policy(cfg: ServeAppConfig, routing: RouterSettings, timeout_s: float = 120.0) -> ServeAppConfig:
    """Hot swap: redeploy the same document with only the Router's user_config changed."""
    new = cfg.model_copy(update={"routing": routing})
    deploy(new, timeout_s)
    return new


def replica_details() -> dict[str, list[dict]]:
    """Per deployment, its replicas (id, state, pid, actor name): Serve's own details (private API)."""
    from ray import serve

    details = serve.context._get_global_client().get_serve_details()
    deployments = details["applications"][APP_NAME]["deployments"]
    return {name: d["replicas"] for name, d in deployments.items()}
