"""The learned router's policy without PyTorch: the same actor's forward pass in NumPy.

Why: PyTorch costs the Router about 200 MB of resident memory and a few hundred microseconds a
decision, for a 32-unit network. `export_numpy(folder)` (run once when an artifact is shipped)
writes `actor_numpy.npz` beside `policy_spec.json`; `load_numpy_policy(folder, tables)`
reads it with NumPy alone. Only the plain SAC actor with per-action networks (`sac-mlp`,
`model.network=per-action`, the shipped router's) is exported; any other artifact loads through
policies.catalog (PyTorch). A registry URI is downloaded first, then built as a local folder is.
`tests/test_serving_routing.py` checks that both paths give the same actions.

The forward pass mirrors policies/diffusion.py `PerActionNet` (ReLU) behind `MLPActor`, with the
artifact's observation scaling (`obs_log1p`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from envs.config import ConfigError

NPZ_FILE = "actor_numpy.npz"
SPEC_FILE = "policy_spec.json"


def exportable(model_config: dict) -> bool:
    return model_config.get("actor") == "mlp" and model_config.get("network") == "per-action"


def export_numpy(folder: str | Path) -> Path:
    """Write the NumPy copy of an artifact's actor (requires torch; the artifact must be exportable)."""
    from policies.artifact import MODULE_STATE, read_module_state

    folder = Path(folder)
    spec = json.loads((folder / SPEC_FILE).read_text())
    if not exportable(spec["model_config"]):
        raise ConfigError(f"{folder}: only sac-mlp per-action actors have a NumPy form")
    state = read_module_state(folder / MODULE_STATE)
    arrays = {k[len("actor."):].replace(".", "_"): v for k, v in state.items() if k.startswith("actor.")}
    arrays["obs_scale"] = state["obs_scale"]
    arrays["cols"] = np.asarray(spec["model_config"]["per_action_columns"], dtype=np.int64).T   # [A, k]
    arrays["obs_log1p"] = np.array(bool(spec["model_config"].get("obs_log1p", False)))
    path = folder / NPZ_FILE
    np.savez(path, **arrays)
    return path


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class NumpyPerActionPolicy:
    """decide(obs) = argmax of the per-action actor's logits, in float32 NumPy."""

    def __init__(self, weights: dict[str, np.ndarray], name: str):
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if k not in ("cols", "obs_log1p")}
        self.cols = np.asarray(weights["cols"], dtype=np.int64)
        self.log1p = bool(weights["obs_log1p"])
        self.name = name

    def logits(self, obs: np.ndarray) -> np.ndarray:
        w = self.w
        x = np.asarray(obs, dtype=np.float32) / w["obs_scale"]
        if self.log1p:
            x = np.log1p(np.maximum(x, 0.0))
        ctx = _relu(_relu(x @ w["net_context_0_weight"].T + w["net_context_0_bias"])
                    @ w["net_context_2_weight"].T + w["net_context_2_bias"])
        pre = (x[:, self.cols] @ w["net_own_weight"].T + w["net_own_bias"] + w["net_action_offset"]
               + (ctx @ w["net_from_context_weight"].T)[:, None, :])
        h = _relu(_relu(pre) @ w["net_hidden_weight"].T + w["net_hidden_bias"])
        return (h @ w["net_out_weight"].T + w["net_out_bias"])[..., 0]

    def decide(self, obs: np.ndarray, state=None) -> np.ndarray:
        return self.logits(obs).argmax(1).astype(np.int64)


def load_numpy_policy(folder: str | Path, layout_json: dict, encoding_json: dict) -> NumpyPerActionPolicy | None:
    """The NumPy policy of an artifact folder, or None when it has no NumPy form.

    Refuses an artifact made for another observation layout or action encoding (the same facts
    policies/artifact.py checks, compared as the JSON both sides write)."""
    folder = Path(folder)
    if not (folder / NPZ_FILE).is_file() or not (folder / SPEC_FILE).is_file():
        return None
    spec = json.loads((folder / SPEC_FILE).read_text())
    if not exportable(spec.get("model_config", {})):
        return None
    have_layout = {k: spec["observation_layout"].get(k) for k in ("version", "dim")}
    want_layout = {k: layout_json[k] for k in ("version", "dim")}
    if have_layout != want_layout or spec.get("action_encoding") != encoding_json:
        raise ConfigError(f"the policy does not fit this topology: {folder} has layout {have_layout} and "
                          f"action encoding {spec.get('action_encoding')}, the router has {want_layout} and "
                          f"{encoding_json}")
    with np.load(folder / NPZ_FILE) as data:
        weights = {k: data[k] for k in data.files}
    return NumpyPerActionPolicy(weights, f"{spec.get('algorithm', 'learned')}-numpy:{folder}")
