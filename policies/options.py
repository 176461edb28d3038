"""Typed training and model options: one documented field each, its default and range beside it.

`TrainConfig.training` is the options model of its algorithm (`SACOptions` for d2sac, lad and
sac-mlp; `PPOOptions`, `DQNOptions`, `RLlibSACOptions` for RLlib's own), `TrainConfig.model` a
`ModelOptions`. A research option is an extension (`policies/extensions/`): its own options model
under one key of `SACOptions`, absent (None) when off. Every model validates from a plain dict,
so YAML, `--set training.actor_lr=3e-4` and a Ray Tune search space all set the same fields.
"""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from envs.config import StrictModel
from policies.extensions.demonstrations import DemonstrationOptions
from policies.extensions.hindsight_credit import HindsightCreditOptions
from policies.extensions.policy_reuse import PolicyReuseOptions


class SACOptions(StrictModel):
    """Discrete soft actor-critic of d2sac, lad and sac-mlp: losses, schedule and extensions."""

    # -- the losses (CleanRL's names where they exist)
    gamma: float = Field(0.5, ge=0.0, le=1.0, description="discount factor (LAD-TS uses 0.5)")
    tau: float = Field(0.005, ge=0.0, le=1.0, description="soft target-update rate of the critics")
    grad_clip: float = Field(10.0, gt=0.0, description="global gradient-norm clip")
    actor_lr: float = Field(1e-3, gt=0.0, description="Adam learning rate of the actor")
    critic_lr: float = Field(1e-3, gt=0.0, description="Adam learning rate of the twin critics")
    alpha_lr: float = Field(3e-3, gt=0.0, description="Adam learning rate of the entropy temperature")
    target_entropy_scale: float = Field(0.65, ge=0.0, le=1.0,
                                        description="target entropy = scale x log|A| (spreading load needs entropy)")
    reward_scale: float = Field(0.1, gt=0.0, description="rewards are multiplied by this before the critic sees them")
    # -- the schedule
    rollout_decisions: int = Field(4096, ge=1, description="decisions sampled per iteration, over all copies")
    decisions_per_update: int = Field(256, ge=1, description="one SGD step per this many decisions sampled")
    minibatch_per_agent: int = Field(256, ge=1, description="rows per agent in every SGD step")
    replay_capacity: int = Field(200_000, ge=1, description="transitions kept per agent")
    learning_starts: int = Field(4096, ge=0, description="decisions before the first update")
    random_decisions: int = Field(0, ge=0, description="uniformly random decisions at the start")
    # -- extensions: absent = off
    demonstrations: DemonstrationOptions | None = Field(
        None, description="start from a demonstrator's decisions (DQfD-style; policies/extensions/demonstrations.py)")
    hindsight_credit: HindsightCreditOptions | None = Field(
        None, description="charge the waits a placement causes to it (dedgeai; policies/extensions/hindsight_credit.py)")
    policy_reuse: PolicyReuseOptions | None = Field(
        None, description="pi-reuse: a source policy acts with a decaying probability (policies/extensions/policy_reuse.py)")

    @model_validator(mode="after")
    def _one_first_actor(self) -> "SACOptions":
        if self.demonstrations is not None and self.random_decisions:
            raise ValueError("training.demonstrations and training.random_decisions both choose the first "
                             "actions: set random_decisions to 0 or drop demonstrations")
        if self.demonstrations is not None and self.policy_reuse is not None:
            raise ValueError("training.demonstrations and training.policy_reuse both act instead of the "
                             "learner: use one of them")
        return self


class ModelOptions(StrictModel):
    """The networks of d2sac, lad and sac-mlp (the actor kind and chain start come from the algorithm)."""

    hidden: int = Field(128, ge=1, le=4096, description="width of the actor / denoiser layers")
    critic_hidden: int = Field(128, ge=1, le=4096, description="width of the critics' layers")
    activation: Literal["silu", "mish", "relu"] = Field("silu", description="of the denoiser (D2SAC's is mish)")
    network: Literal["flat", "per-action"] = Field(
        "flat", description="flat: MLP s -> R^A; per-action: every action scored by shared weights from its columns")
    diffusion_steps: int = Field(5, ge=1, le=100, description="reverse steps I of the diffusion chain")
    beta_min: float = Field(0.1, gt=0.0, description="VP noise schedule, lowest beta")
    beta_max: float = Field(10.0, gt=0.0, description="VP noise schedule, highest beta")
    max_logit_scale: float = Field(10.0, gt=1.0, description="bound of the learned logit scale")
    learn_logit_scale: bool = Field(True, description="learn the logit scale (else fixed at 1)")
    prior_map: Literal["raw", "centered"] = Field(
        "raw", description="LAD chain start: raw x_I = p (LAD-TS) | centered: prior_scale (A p - 1)/(A - 1)")
    prior_scale: float = Field(1.0, gt=0.0, description="LAD: multiplies the chain start")
    lad_keying: Literal["faithful", "no-slot"] = Field(
        "faithful", description="LAD store key: (slot, BS, position) | no-slot: (BS, position), ours")
    obs_log1p: bool = Field(True, description="features log(1 + obs/scale): queues grow without bound")
    initial_alpha: float = Field(0.05, gt=0.0, description="initial entropy temperature")

    @model_validator(mode="after")
    def _betas(self) -> "ModelOptions":
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max ({self.beta_max}) must be > beta_min ({self.beta_min})")
        return self


def module_config(model: ModelOptions, *, actor: str, start: str, n_agents: int,
                  obs_scale: list[float] | None, per_action_columns: list[list[int]] | None) -> dict:
    """The RLModule's model_config (a plain dict, as RLlib passes it): the model options plus what
    the algorithm and the scenario fix."""
    return {**model.model_dump(), "actor": actor, "start": start, "n_agents": n_agents,
            "obs_scale": obs_scale, "per_action_columns": per_action_columns}


class RLlibOptions(StrictModel):
    """RLlib's own algorithms: the fields we set by default; any other keyword of its
    `AlgorithmConfig.training()` is accepted too (checked against RLlib when the config is built)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)


class PPOOptions(RLlibOptions):
    lr: float = Field(3e-4, gt=0.0, description="Adam learning rate")
    gamma: float = Field(0.5, ge=0.0, le=1.0, description="discount factor")
    train_batch_size_per_learner: int = Field(4096, ge=1, description="decisions per iteration")
    minibatch_size: int = Field(512, ge=1, description="rows per SGD step")
    num_epochs: int = Field(4, ge=1, description="passes over every batch")
    entropy_coeff: float = Field(0.01, ge=0.0, description="entropy bonus")
    lambda_: float = Field(0.9, ge=0.0, le=1.0, description="GAE lambda")


class DQNOptions(RLlibOptions):
    lr: float = Field(5e-4, gt=0.0, description="Adam learning rate")
    gamma: float = Field(0.5, ge=0.0, le=1.0, description="discount factor")
    train_batch_size_per_learner: int = Field(256, ge=1, description="rows per SGD step")
    n_step: int = Field(1, ge=1, description="n-step returns")
    target_network_update_freq: int = Field(2000, ge=1, description="env steps between target syncs")
    training_intensity: float = Field(0.5, gt=0.0, description="replayed / sampled steps")
    num_steps_sampled_before_learning_starts: int = Field(4096, ge=0, description="decisions before learning")
    double_q: bool = Field(True, description="double Q-learning")
    dueling: bool = Field(True, description="dueling heads")


class RLlibSACOptions(RLlibOptions):
    actor_lr: float = Field(3e-4, gt=0.0, description="Adam learning rate of the actor")
    critic_lr: float = Field(1e-3, gt=0.0, description="Adam learning rate of the critics")
    alpha_lr: float = Field(3e-4, gt=0.0, description="Adam learning rate of the temperature")
    gamma: float = Field(0.5, ge=0.0, le=1.0, description="discount factor")
    train_batch_size_per_learner: int = Field(256, ge=1, description="rows per SGD step")
    training_intensity: float = Field(0.5, gt=0.0, description="replayed / sampled steps")
    num_steps_sampled_before_learning_starts: int = Field(4096, ge=0, description="decisions before learning")
    target_entropy: float | Literal["auto"] = Field(
        "auto", description="'auto' is RLlib's (-1 for a Discrete space); ours uses 0.65 log|A|")
