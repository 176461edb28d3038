"""The cluster definitions in cluster/, checked offline and without a Ray runtime.

Launcher files (cluster/launcher/*.yaml): Ray's own checks, those `ray up` runs before it touches
a machine (Ray's schema on the file as written, then `prepare_config` + `validate_config`; no cloud
call), and this project's: token auth, run state on shared storage, the shared tracking server, the
pinned installs.
"""
from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_FILES = sorted((ROOT / "cluster" / "launcher").glob("*.yaml"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(package: str) -> str:
    for requirement in PYPROJECT["project"]["dependencies"]:
        found = re.fullmatch(rf"{package}(\[[^\]]*\])?==(\S+)", requirement)
        if found:
            return found.group(2)
    raise AssertionError(f"pyproject.toml pins no exact version of {package}")


PYTHON_TAG = "py" + "".join(re.match(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups())
RAY_IMAGE = f"rayproject/ray:{pinned('ray')}-{PYTHON_TAG}-cpu"
TORCH_CPU_INSTALL = f"torch=={pinned('torch')} --index-url https://download.pytorch.org/whl/cpu"


# ---------------------------------------------------------------- cluster launcher

def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.fixture(params=LAUNCHER_FILES, ids=lambda path: path.name)
def launcher(request) -> dict:
    return yaml.safe_load(request.param.read_text())


def test_launcher_files_cover_on_prem_and_a_cloud():
    providers = {yaml.safe_load(path.read_text())["provider"]["type"] for path in LAUNCHER_FILES}
    assert "local" in providers and providers - {"local"}, providers


def test_launcher_file_passes_rays_validators(launcher):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    # The file as written: prepare_config would silently drop what the schema refuses (a top-level
    # min_workers, for one).
    jsonschema.validate(launcher, ray_schema())
    validate_config(prepare_config(copy.deepcopy(launcher)))


def node_environment(config: dict) -> dict[str, str]:
    """The KEY=VALUE pairs the setup commands write into ~/aigc-edge.env (the start commands source it)."""
    text = " ".join(c for c in config["setup_commands"] if re.search(r">>? ~/aigc-edge\.env", c))
    return dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", text))


def test_launcher_nodes_run_token_auth_shared_state_and_a_shared_tracking_server(launcher):
    env = node_environment(launcher)
    assert env.get("RAY_AUTH_MODE") == "token", env
    assert env.get("MLFLOW_TRACKING_URI", "").startswith("http://"), env
    # Run state on the shared folder mounted into every node's container.
    shared = [option.split()[-1].split(":")[1] for option in launcher["docker"]["run_options"]
              if option.startswith(("--volume", "-v "))]
    assert any(env.get("AIGC_EDGE_HOME", "").startswith(path + "/") for path in shared), (env, shared)
    # Every `ray start`, head and workers, starts in that environment.
    starts = [c for c in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
              if "ray start" in c]
    assert len(starts) == 2 and all(c.startswith(". ~/aigc-edge.env && ") for c in starts), starts
    # The token is made on the machine that runs `ray up` and shipped to where Ray reads it on each node.
    assert launcher["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    # The head serves the tracking URI's port, its store in the shared run state.
    port = re.search(r"MLFLOW_TRACKING_URI=http://.*?:(\d+)", " ".join(launcher["setup_commands"])).group(1)
    (server,) = [c for c in launcher["head_start_ray_commands"] if "mlflow server" in c]
    assert f"--port {port}" in server and "sqlite:///$AIGC_EDGE_HOME/" in server, server


def test_launcher_installs_cpu_torch_then_the_pinned_project(launcher):
    assert launcher["docker"]["image"] == RAY_IMAGE
    assert launcher["file_mounts"].get("~/aigc-edge") == "."  # the project folder `ray up` runs in
    commands = launcher["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if TORCH_CPU_INSTALL in c)
    project_at = next(i for i, c in enumerate(commands) if "pip install" in c and "~/aigc-edge" in c)
    assert torch_at < project_at, commands
