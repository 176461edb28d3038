"""The Tune trainable: one training run (a source, or a target cell of the transfer grid).

A trial is `policies.training.train` with a callback that evaluates the learning policy every
`eval_every_decisions` target decisions (the same evaluation episodes for every trial),
logs the curve to its MLflow child run and reports it to Tune. Its run folder is absolute
(`<root>/sources/...` or `<root>/trials/<name>`) and the trial always resumes from it, so a
trial Tune restarts continues from its last checkpoint; the curve travels in that checkpoint's
run state. A finished trial leaves `DONE.json`; run again, it reports that and returns.

The env runs in the trial process (no env-runner actors), so a trial needs exactly the CPUs
Tune gives it, here and on a cluster.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policies.training import TrainConfig, TrainingCallbacks, train
from tuning.experiment import ACTING_MODES, SCRATCH, SOURCE_STAGE, ExperimentConfig
from tuning.families import resolve_family

DONE_FILE = "DONE.json"


@dataclass(frozen=True)
class TrialSpec:
    """What one trial trains: a cell of the grid (or a source) and a seed."""
    mode: str                   # none | init | pi-reuse | both | source
    target: str                 # the family trained on (the source family itself for a source)
    source: str | None
    seed: int
    params: tuple = ()          # (dotted field, value) pairs of a search sample

    @classmethod
    def of(cls, config: dict) -> "TrialSpec":
        config = config.get("trial", config)        # an explicit grid puts the cell under "trial"
        cell = config["cell"]
        return cls(cell["mode"], cell["target"], cell.get("source"), int(config["seed"]),
                   tuple(sorted((config.get("params") or {}).items())))

    def run_name(self) -> str:
        target = resolve_family(self.target).slug
        if self.mode == SOURCE_STAGE:
            return f"seed{self.seed}"
        if self.mode == SCRATCH:
            name = f"{target}-scratch"
        else:
            name = f"{target}-{self.mode}-from-{resolve_family(self.source).slug}"
        for key, value in self.params:
            name += f"-{key.split('.')[-1]}{value:.3g}" if isinstance(value, float) else f"-{key.split('.')[-1]}{value}"
        return f"{name}-s{self.seed}"

    @property
    def pair(self) -> str:
        return f"{self.source}->{self.target}" if self.source else f"scratch->{self.target}"


def source_root(root: Path, algo: str, family: str) -> Path:
    return root / "sources" / algo / resolve_family(family).slug


def source_dir(root: Path, algo: str, family: str, seed: int) -> Path:
    return source_root(root, algo, family) / f"seed{seed}"


def run_dir(root: Path, exp: ExperimentConfig, spec: TrialSpec) -> Path:
    if spec.mode == SOURCE_STAGE:
        return source_dir(root, exp.algo, spec.target, spec.seed)
    return root / "trials" / spec.run_name()


def set_dotted(data: dict, key: str, value) -> None:
    *path, last = key.split(".")
    for part in path:
        data = data.setdefault(part, {})
    data[last] = value


def train_config(exp: ExperimentConfig, spec: TrialSpec, root: Path) -> TrainConfig:
    """The TrainConfig of a trial: the experiment's options, the cell's reuse mode, a sample's values."""
    family = resolve_family(spec.target)
    training, model = dict(exp.training), dict(exp.model)
    data: dict = {"scenario": family.scenario, "scenario_overrides": list(family.overrides),
                  "algo": exp.algo, "seed": spec.seed, "num_envs": exp.num_envs,
                  "episodes": exp.source_episodes if spec.mode == SOURCE_STAGE else exp.target_episodes,
                  "run_name": spec.run_name(), "register_policy": False,
                  "checkpoint_every_s": exp.checkpoint_every_s, "training": training, "model": model}
    if spec.mode not in (SCRATCH, SOURCE_STAGE):
        source = str(source_dir(root, exp.algo, spec.source, spec.seed))
        if spec.mode in ("init", "both"):
            data["init_from"] = source
        if spec.mode in ACTING_MODES:
            training["policy_reuse"] = {"source": source, **exp.reuse.model_dump(), "seed": spec.seed}
    for key, value in spec.params:
        set_dotted(data, key, value)
    return TrainConfig.model_validate(data)


def evaluate_learner(algo, config, episodes: int, seed: int) -> dict[str, float]:
    """The learning policy on the fixed evaluation episodes: return, reward, latency. It acts by
    sampling pi(.|s) with a fixed seed (SAC's policy is stochastic; early in training its argmax
    herds every task onto one action, docs/agents.md)."""
    from policies.artifact import policy_of_module
    from policies.evaluation import run_episodes

    module = algo.learner_group._learner.module["default_policy"]
    policy = policy_of_module(module, algo.lad_store(), sample=True, seed=seed)
    log = run_episodes(config, policy, episodes, seed=seed)
    returns = [float(r.sum()) for r in log.rewards]
    return {"eval_return": float(np.mean(returns)),
            "eval_reward_per_decision": float(np.mean([r.mean() for r in log.rewards])),
            "eval_latency_s": float(np.mean([d.mean() for d in log.delays]))}


class TrialRecorder(TrainingCallbacks):
    """Evaluates the learner on a schedule; logs the curve to MLflow and reports it to Tune."""

    def __init__(self, exp: ExperimentConfig, spec: TrialSpec, parent_run_id: str | None, report):
        self.exp, self.spec, self.parent, self.report = exp, spec, parent_run_id, report
        self.algo = None
        self.eval_config = resolve_family(spec.target).config()

    def on_start(self, cfg, scenario_config, state, resumed_from) -> None:
        from tuning.recording import open_child

        self.cfg, self.state = cfg, state
        state.setdefault("curve", [])
        spec, exp = self.spec, self.exp
        reuse = exp.reuse if spec.mode in ACTING_MODES else None
        params = {"source": spec.source or "-", "target": spec.target, "mode": spec.mode, "algo": exp.algo,
                  "seed": spec.seed, "budget_episodes": cfg.episodes,
                  "psi": reuse.psi if reuse else 0.0, "upsilon": reuse.upsilon if reuse else None,
                  "episode_decay": reuse.episode_decay if reuse else None,
                  "source_episodes": exp.source_episodes if spec.source else 0,
                  **{k: v for k, v in spec.params}}
        tags = {"pair": spec.pair, "reuse_mode": spec.mode, "trial_id": _trial_id(), "algo": exp.algo,
                "kind": "source" if spec.mode == SOURCE_STAGE else "transfer"}
        self.run_id = open_child(state, resumed_from is not None, self.parent, spec.run_name(), params, tags,
                                 {"train": cfg.model_dump(mode="json")})

    def on_algorithm(self, algo) -> None:
        self.algo = algo
        if not self.state["curve"]:
            self._evaluate(episodes=0, decisions=0, online=None)

    def on_iteration(self, progress, metrics) -> None:
        due = self.state["curve"][-1]["step"] + self.exp.eval_every_decisions
        if progress.decisions >= due or progress.episodes >= progress.episodes_total:
            self._evaluate(progress.episodes, progress.decisions, self._online_return())

    def _online_return(self) -> float | None:
        """The behaviour's mean return (reused actions included) over the last 10 finished episodes
        (the vectorised copies finish theirs together, so most evaluations see none new)."""
        recent = [e["return"] for e in getattr(self.algo, "episodes", [])[-10:] if "return" in e]
        return float(np.mean(recent)) if recent else None

    def _evaluate(self, episodes: int, decisions: int, online: float | None) -> None:
        from tuning.recording import log_numbers

        point = {"step": int(decisions), "episodes": int(episodes),
                 **evaluate_learner(self.algo, self.eval_config, self.exp.eval_episodes, self.exp.eval_seed)}
        if online is not None:
            point["online_return"] = online
        self.state["curve"].append(point)
        log_numbers(self.run_id, {k: v for k, v in point.items() if k != "step"}, step=point["step"])
        if self.report is not None:
            self.report({**point, "finished": False})

    def on_end(self, result, run_dir) -> None:
        from tuning.recording import client, log_numbers

        curve = self.state["curve"]
        if curve[-1]["episodes"] < result["episodes"]:
            self._evaluate(result["episodes"], int(self.algo.decisions), self._online_return())
        final = {"final_return": float(np.mean([p["eval_return"] for p in curve[-3:]])),
                 "wall_s": result["wall_s"], "target_steps": curve[-1]["step"]}
        log_numbers(self.run_id, final, step=curve[-1]["step"])
        client().log_artifact(self.run_id, str(Path(run_dir) / "learning_curve.png"), "plots")
        client().set_terminated(self.run_id, "FINISHED")
        result.update(final, run_id=self.run_id, curve=curve)

    def on_failure(self, error) -> None:
        from tuning.recording import client

        if getattr(self, "run_id", None):
            client().set_terminated(self.run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def _trial_id() -> str:
    try:
        from ray import tune
        return tune.get_context().get_trial_id() or "-"
    except Exception:
        return "-"


def run_trial(config: dict, experiment: dict, root: str, parent_run_id: str | None,
              tracking_uri: str, home: str) -> None:
    """The Tune function trainable (also callable without Tune: `report` is then a no-op).
    What it trained is in its folder's DONE.json; it returns nothing (Tune would report a
    returned dict as one more result)."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri     # the trial's process: set it here (mlflow#7206)
    os.environ["AIGC_EDGE_HOME"] = home
    from ray import tune

    exp, spec, root_path = ExperimentConfig.model_validate(experiment), TrialSpec.of(config), Path(root)
    folder = run_dir(root_path, exp, spec)
    report = tune.report if tune.get_context().get_trial_id() else None
    done = folder / DONE_FILE
    if done.is_file():                       # finished before a kill Tune did not record
        result = json.loads(done.read_text())
        if report:
            report({"finished": True, "final_return": result.get("final_return", float("nan")),
                    "eval_return": result["curve"][-1]["eval_return"]})
        return
    cfg = train_config(exp, spec, root_path)
    result = train(cfg, resume=True, callbacks=[TrialRecorder(exp, spec, parent_run_id, report)],
                   run_root=folder.parent)
    summary = {"spec": {"mode": spec.mode, "source": spec.source, "target": spec.target, "seed": spec.seed,
                        "params": dict(spec.params)},
               **{k: v for k, v in result.items() if k != "checkpoint"}}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary))
    tmp.rename(done)
    if report:
        report({"finished": True, "final_return": result["final_return"], "step": result["target_steps"],
                "eval_return": result["curve"][-1]["eval_return"]})
