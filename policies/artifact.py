"""Policy artifacts: write one after training, load it as a `Policy` without Ray.

An artifact is a folder:

    policy_spec.json   what the policy expects (below); checked against the caller's scenario
    module/            the RLModule checkpoint (`RLModule.from_checkpoint(dir)` rebuilds it); the
                       one copy of the weights: `load_policy` reads the actor's from its state
                       file without Ray
    lad_store.npy      LAD only: the historical action probability per decision context

`policy_spec.json` holds the scenario name and config, the observation layout (version, dim,
fields), the action encoding, the profile's digest (scenarios with a generator: a policy trained
on another ExitProfile is refused), the algorithm,
the actor's model config and the training config.

`load_policy(spec, config)` accepts the artifact folder, an RLlib checkpoint folder written by
`aigc-edge train` (it finds the artifact beside it), or an MLflow URI (`models:/name@champion`,
`runs:/<id>/policy`). It acts with the argmax of the chain's output (no chain noise; D2SAC's
chain starts from 0, the mean of its N(0, I) start).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.config import ConfigError
from envs.scenarios import make_core, scenario_name
from policies.diffusion import acting_logits, build_actor

SPEC_FILE = "policy_spec.json"
SPEC_VERSION = 2            # 2: the weights are read from module/ (no actor.pt copy)
MODULE_STATE = Path("module") / "module_state.pkl"


class PolicySpecMismatch(ConfigError):
    """The artifact was trained for another scenario, observation layout or action encoding."""


def _core_of(config):
    return make_core(config, 1, 0)


def describe(config, core=None) -> dict:
    """The parts of a scenario a policy depends on: name, layout, encoding, profile hash, form."""
    core = core or _core_of(config)
    return {"scenario": scenario_name(config),
            "form": getattr(config, "form", None),
            "mode": getattr(config, "mode", None),
            "observation_layout": core.layout.to_json(),
            "action_encoding": core.encoding.to_json(),
            "profile_hash": core.profile.digest() if getattr(core, "profile", None) is not None else None}


def write_artifact(folder: Path, *, module, config, algorithm: str, training_config: dict,
                   lad_store: np.ndarray | None = None, core=None) -> Path:
    """Write the artifact of a trained DiffusionSACModule (the learner's copy) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module.save_to_path(str(folder / "module"))
    if lad_store is not None and module.cfg["start"] == "prior":
        np.save(folder / "lad_store.npy", lad_store.astype(np.float32))
    spec = {"spec_version": SPEC_VERSION, **describe(config, core), "algorithm": algorithm,
            "n_agents": module.n_agents, "n_actions": module.n_actions,
            "model_config": {k: v for k, v in module.cfg.items() if k != "obs_scale"},
            "scenario_config": config.model_dump(mode="json"), "training_config": training_config}
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, default=str))
    return folder


def check_spec(spec: dict, config, core=None, transfer: bool = False) -> None:
    """Refuse an artifact whose scenario, observation layout or action encoding differs.

    `transfer`: the policy is reused on another family of the same scenario (collab-exit/urban
    on collab-exit/peak): the family may differ, the spaces may not."""
    want = describe(config, core)
    problems = []
    have_scenario = str(spec.get("scenario"))
    if transfer:
        if have_scenario.split("/")[0] != want["scenario"].split("/")[0]:
            problems.append(f"scenario: trained on {have_scenario!r}, reused on {want['scenario']!r} "
                            "(a policy transfers between families of one scenario only)")
    elif have_scenario != want["scenario"]:
        problems.append(f"scenario: trained on {have_scenario!r}, asked for {want['scenario']!r}")
    have_layout, want_layout = spec.get("observation_layout", {}), want["observation_layout"]
    for key in ("version", "dim"):
        if have_layout.get(key) != want_layout[key]:
            problems.append(f"observation layout {key}: policy has {have_layout.get(key)}, "
                            f"scenario has {want_layout[key]}")
    names = [f["name"] for f in have_layout.get("fields", [])]
    want_names = [f["name"] for f in want_layout["fields"]]
    if names != want_names and have_layout.get("dim") == want_layout["dim"]:
        problems.append(f"observation fields: policy has {names}, scenario has {want_names}")
    if spec.get("action_encoding") != want["action_encoding"]:
        problems.append("action encoding: policy has "
                        f"{spec.get('action_encoding', {}).get('targets')} x "
                        f"{spec.get('action_encoding', {}).get('plans')}, scenario has "
                        f"{want['action_encoding']['targets']} x {want['action_encoding']['plans']}")
    if spec.get("profile_hash") and want["profile_hash"] and spec["profile_hash"] != want["profile_hash"]:
        problems.append(f"generator profile: policy {spec['profile_hash']}, scenario {want['profile_hash']}")
    if spec.get("form") != want["form"]:
        problems.append(f"form: policy is {spec.get('form')!r}, scenario is {want['form']!r}")
    if problems:
        raise PolicySpecMismatch("the policy does not fit this scenario:\n  " + "\n  ".join(problems))


class DiffusionPolicy:
    """A trained actor as a `Policy`: `decide(obs, state)` -> argmax of the chain's output.

    Multi-agent artifacts pick each row's agent from `state.local_target` (the BS the task
    arrived at). LAD reads `state.context_key` when the state carries it (else the uniform
    probability, the store's initial value) and writes its store after each decision, as in training.
    """

    def __init__(self, actor: torch.nn.Module, obs_scale: torch.Tensor, spec: dict,
                 lad_store: np.ndarray | None, name: str, sample: bool = False, seed: int | None = None):
        self.actor, self.obs_scale, self.spec, self.name = actor.eval(), obs_scale, spec, name
        # argmax (default) or a draw from pi(.|s): on dedgeai faithful the argmax herds every task
        # of a slot onto the same servers (Qbef is not observed), so the stochastic policy is the
        # one that balances load; see docs/agents.md.
        self.sample, self.rng = sample, np.random.default_rng(seed)
        self.n_agents, self.n_actions = int(spec["n_agents"]), int(spec["n_actions"])
        self.model_config = spec["model_config"]
        self.lad = self.model_config["start"] == "prior"
        self.store = lad_store

    @torch.no_grad()
    def probabilities(self, obs: np.ndarray, state=None) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(obs, np.float32))
        agent = None
        if self.n_agents > 1:
            if state is None:
                raise ValueError("a multi-agent policy needs the network state (which agent acts)")
            agent = torch.as_tensor(np.asarray(state.local_target, np.int64))
        key = getattr(state, "context_key", None) if self.lad else None
        if key is not None and self.model_config.get("lad_keying") == "no-slot":
            key = np.asarray(key) % self.store.shape[0]
        prior = None
        if self.lad:
            if key is not None and self.store is not None:
                prior = torch.as_tensor(self.store[np.asarray(key)])
            else:
                prior = torch.full((obs.shape[0], self.n_actions), 1.0 / self.n_actions)
        logits = acting_logits(self.actor, self.model_config, self.obs_scale, obs, agent, prior, noise=False)
        probs = torch.softmax(logits, -1).numpy()
        if self.lad and key is not None and self.store is not None:
            self.store[np.asarray(key)] = probs
        return probs

    def decide(self, obs: np.ndarray, state=None) -> np.ndarray:
        probs = self.probabilities(obs, state)
        if self.sample:
            u = self.rng.random((probs.shape[0], 1))
            return np.minimum((probs.cumsum(1) < u).sum(1), probs.shape[1] - 1).astype(np.int64)
        return probs.argmax(1).astype(np.int64)


def actor_of(spec: dict) -> torch.nn.Module:
    cfg = {**spec["model_config"], "n_agents": int(spec["n_agents"])}
    return build_actor(cfg, spec["observation_layout"]["dim"], int(spec["n_actions"]))


def resolve_folder(spec: str) -> Path:
    """An artifact folder from a folder path (artifact or training run) or an MLflow URI."""
    if spec.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        from policies.tracking import configure_mlflow
        mlflow = configure_mlflow()
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec))
        candidates = [local, local / "policy"]
    else:
        local = Path(spec).expanduser()
        if not local.exists():
            raise ConfigError(f"policy {spec!r} is neither a heuristic name, an existing folder nor "
                              "an MLflow URI (models:/NAME@ALIAS, runs:/ID/policy)")
        candidates = [local, local / "policy", local.parent / "policy", local.parent.parent / "policy"]
    for folder in candidates:
        if (folder / SPEC_FILE).is_file():
            return folder
    raise ConfigError(f"no {SPEC_FILE} under {spec!r}: not a policy artifact written by `aigc-edge train`")


def load_policy(spec: str, config: Any, sample: bool = False, seed: int | None = None,
                transfer: bool = False) -> DiffusionPolicy:
    """Load a trained policy for scenario `config` (refusing a spec mismatch), without Ray.

    Acts by argmax; `sample=True` (or a spec ending in `#sample`) draws from pi(.|s) instead.
    `transfer`: `config` may be another family of the policy's scenario (see `check_spec`)."""
    spec = str(spec)
    if spec.endswith("#sample"):
        spec, sample = spec[: -len("#sample")], True
    folder = resolve_folder(spec)
    meta = json.loads((folder / SPEC_FILE).read_text())
    check_spec(meta, config, transfer=transfer)
    if meta.get("spec_version") != SPEC_VERSION:
        raise ConfigError(f"{folder}: policy artifact version {meta.get('spec_version')}, this code reads "
                          f"version {SPEC_VERSION}; retrain it with `aigc-edge train`")
    weights = read_module_state(folder / MODULE_STATE)
    actor = actor_of(meta)
    actor.load_state_dict({k[len("actor."):]: torch.from_numpy(v) for k, v in weights.items() if k.startswith("actor.")})
    store_path = folder / "lad_store.npy"
    store = np.load(store_path) if store_path.is_file() else None
    return DiffusionPolicy(actor, torch.from_numpy(weights["obs_scale"]), meta, store, sample=sample, seed=seed,
                           name=f"{meta['algorithm']}{'-sampled' if sample else ''}:{folder}")


def policy_of_module(module, lad_store: np.ndarray | None = None, name: str = "learner",
                     sample: bool = False, seed: int | None = None) -> DiffusionPolicy:
    """A frozen copy of a live DiffusionSACModule's actor as a Policy (evaluation during training)."""
    import copy

    spec = {"n_agents": module.n_agents, "n_actions": module.n_actions,
            "model_config": {k: v for k, v in module.cfg.items() if k != "obs_scale"}}
    store = None if lad_store is None else np.array(lad_store, np.float32)
    return DiffusionPolicy(copy.deepcopy(module.actor), module.obs_scale.detach().clone(), spec, store, name=name,
                           sample=sample, seed=seed)


def source_module_dir(spec: str) -> tuple[Path, Path | None]:
    """Where the weights of a source policy are, for `init_from`: (RLModule checkpoint folder,
    its artifact folder or None). `spec`: an artifact, a training-run folder, or an MLflow URI."""
    location = Path(spec).expanduser()
    run_module = location / "algo" / "learner_group" / "learner" / "rl_module" / "default_policy"
    if not spec.startswith(("models:/", "runs:/", "mlflow-artifacts:/")) and run_module.is_dir():
        artifact = location / "policy"
        return run_module, artifact if (artifact / SPEC_FILE).is_file() else None
    artifact = resolve_folder(spec)
    return artifact / "module", artifact


class _ArraysOnly(pickle.Unpickler):
    """RLlib writes a module's state as a pickled dict of NumPy arrays: read that and nothing else."""

    NUMPY_NAMES = {"ndarray", "dtype", "_reconstruct", "_frombuffer", "scalar"}

    def find_class(self, module: str, name: str):
        allowed = ((module, name) == ("collections", "OrderedDict") or module == "numpy.dtypes"
                   or (module.split(".")[0] == "numpy" and name in self.NUMPY_NAMES))
        if not allowed:
            raise pickle.UnpicklingError(f"unexpected {module}.{name} in a module state file")
        return super().find_class(module, name)


def read_module_state(path: Path) -> dict[str, np.ndarray]:
    """The RLModule checkpoint's weights, {parameter name: array}, without Ray."""
    if not path.is_file():
        raise ConfigError(f"{path.parent.parent}: the RLModule checkpoint's {path.name} is missing "
                          "(a partial artifact?)")
    with open(path, "rb") as f:
        return dict(_ArraysOnly(f).load())
