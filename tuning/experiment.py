"""A transfer experiment as data: sources x targets x reuse modes x seeds, loaded from YAML.

`aigc-edge tune tuning/experiments/transfer.yaml` runs one; `aigc-edge transfer` builds one for a
single pair. The grid is explicit cells (source, target, mode), so scratch ("none") runs once per
target and seed however many sources transfer to it. Every field has its default and range here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from envs.config import ConfigError, StrictModel
from policies.extensions.policy_reuse import PolicyReuseOptions
from policies.registry import ALGO_NAMES, algorithm
from tuning.families import resolve_family

REUSE_MODES = ("none", "init", "pi-reuse", "both")
SCRATCH, SOURCE_STAGE = "none", "source"
# Reconstructions of Tian et al.'s unnamed "policy reuse mechanisms" (docs/transfer.md).
MODE_DOCS = {"none": "scratch: the target trained from random weights",
             "init": "initialise from the source's weights (actor and critics), then fine-tune",
             "pi-reuse": "Fernandez & Veloso's pi-reuse: the frozen source acts with a decaying probability",
             "both": "init and pi-reuse together"}
ACTING_MODES = ("pi-reuse", "both")        # the source acts: off-policy learners only
EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


def default_experiment_file(target_scenario: str) -> Path:
    """The shipped experiment whose settings `aigc-edge transfer` uses without --config."""
    return EXPERIMENTS_DIR / ("serve-sim.yaml" if target_scenario == "serve-sim" else "transfer.yaml")


class Pair(StrictModel):
    source: str = Field(min_length=1, description="family the policy is trained on (preset, YAML, serve-sim:FILE)")
    target: str = Field(min_length=1, description="family it is transferred to")


class ReuseSettings(StrictModel):
    """pi-reuse's schedule (policies/extensions/policy_reuse.py)."""
    psi: float = PolicyReuseOptions.model_fields["psi"]
    upsilon: float = PolicyReuseOptions.model_fields["upsilon"]
    episode_decay: float = PolicyReuseOptions.model_fields["episode_decay"]


class SearchDomain(StrictModel):
    """One dimension of a search space: exactly one of these."""
    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> "SearchDomain":
        given = [k for k in ("loguniform", "uniform", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of loguniform, uniform, choice (got {given or 'none'})")
        for k in ("loguniform", "uniform"):
            bounds = getattr(self, k)
            if bounds is not None and not (bounds[0] < bounds[1] and (k == "uniform" or bounds[0] > 0)):
                raise ValueError(f"{k} bounds must be low < high{' and low > 0' if k == 'loguniform' else ''}, got {bounds}")
        return self


class SearchSettings(StrictModel):
    """An ASHA hyper-parameter search over the typed training options (scratch on `target`)."""
    target: str = Field(min_length=1, description="family to search on")
    space: dict[str, SearchDomain] = Field(min_length=1, description="dotted TrainConfig field -> domain")
    num_samples: int = Field(8, ge=1, le=1000, description="configurations sampled")
    grace_period: int = Field(2, ge=1, description="evaluations before ASHA may stop a trial")
    reduction_factor: int = Field(2, ge=2, description="ASHA keeps 1 in this many at each rung")


class ExperimentConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="folder and MLflow parent run name")
    algo: Literal[ALGO_NAMES] = Field("lad", description=" | ".join(ALGO_NAMES))
    pairs: list[Pair] = Field(default_factory=list, description="source -> target transfers")
    modes: list[Literal[REUSE_MODES]] = Field(list(REUSE_MODES), min_length=1,
                                             description="reuse modes per pair: none | init | pi-reuse | both")
    seeds: list[int] = Field([0], min_length=1, description="seeds: every cell runs once per seed")
    source_episodes: int = Field(60, ge=1, description="episodes of every source's training")
    target_episodes: int = Field(30, ge=1, description="the transfer budget: episodes on the target")
    eval_every_decisions: int = Field(2048, ge=1, description="the learner is evaluated every this many target decisions")
    eval_episodes: int = Field(4, ge=1, le=64, description="evaluation episodes (the same for every trial)")
    eval_seed: int = Field(10_007, description="seed of the evaluation episodes")
    num_envs: int = Field(10, ge=1, le=4096, description="vectorised copies per trial")
    training: dict[str, Any] = Field(default_factory=dict, description="the algorithm's options (policies/options.py)")
    model: dict[str, Any] = Field(default_factory=dict, description="network options (policies/options.py)")
    reuse: ReuseSettings = Field(default_factory=ReuseSettings, description="pi-reuse's psi schedule")
    search: SearchSettings | None = Field(None, description="an ASHA search instead of a transfer grid")
    cpus_per_trial: float = Field(1.0, gt=0.0, le=64.0, description="CPUs Tune reserves per trial")
    max_concurrent_trials: int = Field(2, ge=1, le=1024, description="trials at once (2 on a 2-core machine)")
    checkpoint_every_s: float = Field(30.0, gt=0.0, description="seconds between a trial's checkpoints")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        if not self.pairs and self.search is None:
            raise ValueError("pairs: give at least one source -> target pair (or a search)")
        if not algorithm(self.algo).ours:
            raise ValueError(f"algo {self.algo}: transfer experiments run lad, d2sac and sac-mlp (our "
                             "agents, whose learner is evaluated in the trial); RLlib's ppo/dqn/sac can "
                             "start from a source with `aigc-edge train --set init_from=RUN_FOLDER`")
        return self

    def check_families(self) -> None:
        """Every family resolves (a clear error naming the pair otherwise)."""
        for i, pair in enumerate(self.pairs):
            resolve_family(pair.source, f"pairs[{i}].source")
            resolve_family(pair.target, f"pairs[{i}].target")
        if self.search is not None:
            resolve_family(self.search.target, "search.target")

    # -- the grid --------------------------------------------------------------------------------
    def sources(self) -> list[str]:
        needed = [p.source for p in self.pairs if any(m != SCRATCH for m in self.modes)]
        return list(dict.fromkeys(needed))

    def cells(self) -> list[dict]:
        """Explicit (source, target, mode) cells: scratch once per target, the others per pair."""
        out: list[dict] = []
        if SCRATCH in self.modes:
            for target in dict.fromkeys(p.target for p in self.pairs):
                out.append({"source": None, "target": target, "mode": SCRATCH})
        for pair in self.pairs:
            for mode in self.modes:
                if mode != SCRATCH:
                    out.append({"source": pair.source, "target": pair.target, "mode": mode})
        return out


def check_reuse_mode(algo: str, mode: str) -> None:
    """PPO and RLlib's learners cannot learn from actions they did not choose."""
    if mode in ACTING_MODES and not algorithm(algo).ours:
        raise ConfigError(f"--reuse {mode}: {algo} is on-policy or RLlib's own learner; pi-reuse needs "
                          "an off-policy learner of ours (lad, d2sac, sac-mlp). Use --reuse init")
