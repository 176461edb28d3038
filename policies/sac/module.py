"""The RLModule of the D2SAC / LAD agents (and their plain-MLP SAC twin): the model, nothing else.

One `TorchRLModule` holds the actor (a `DiffusionActor`, or an `MLPActor` for `actor="mlp"`),
twin Q networks Q(s) -> R^|A| with target copies, and the entropy temperature log(alpha).
Each network is a flat MLP, or with `network="per-action"` scores every action with one set of
weights from the observation's columns about it (`policies/diffusion.py`, `PerActionNet`).
With `n_agents` > 1 every network is an ensemble of independent per-agent weights (the faithful
dedgeai form: one agent per base station, nothing shared); the batch then carries an `agent`
column. LAD's chain starts from a `prior` column (the historical action probability of the
decision context); D2SAC's from N(0, I) (from 0 when acting greedily).

Training batches for n_agents > 1 are grouped: E blocks of m rows, block e all of agent e. The
learner's loss lives in `policies/sac/learner.py`; the sampling schedule in `policies/sac/algorithm.py`.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule

from policies.diffusion import acting_logits, action_scores, build_actor, chain_start, per_action_columns, scaled_features
from policies.options import ModelOptions, module_config

AGENT = "agent"            # [B] int: which agent acts (0 in the shared form)
PRIOR = "prior"            # [B, A] LAD: historical action probability of the context of obs
NEXT_PRIOR = "next_prior"  # [B, A] the same for next_obs
BY_SOURCE = "by_source"    # [B] 1.0 where an action source (e.g. a demonstrator), not the actor, chose

# What the module assumes for anything its model_config leaves out.
DEFAULT_MODULE_CONFIG = module_config(ModelOptions(), actor="diffusion", start="noise", n_agents=1,
                                      obs_scale=None, per_action_columns=None)


class DiffusionSACModule(TorchRLModule):
    """Actor + twin critics (+ targets) + temperature of discrete soft actor-critic."""

    def setup(self):
        cfg = {**DEFAULT_MODULE_CONFIG, **(self.model_config or {})}
        self.cfg = cfg
        obs_dim = int(np.prod(self.observation_space.shape))
        n_actions = int(self.action_space.n)
        self.n_agents, self.n_actions = int(cfg["n_agents"]), n_actions
        scale = np.ones(obs_dim, np.float32) if cfg["obs_scale"] is None else np.asarray(cfg["obs_scale"], np.float32)
        if scale.shape != (obs_dim,):
            raise ValueError(f"obs_scale has {scale.shape[0]} values, the observation has {obs_dim}")
        self.register_buffer("obs_scale", torch.as_tensor(scale), persistent=True)
        self.actor = build_actor(cfg, obs_dim, n_actions)
        columns = per_action_columns(cfg)
        self.qf = action_scores(self.n_agents, obs_dim, cfg["critic_hidden"], n_actions, columns)
        self.qf_twin = action_scores(self.n_agents, obs_dim, cfg["critic_hidden"], n_actions, columns)
        self.qf_target = copy.deepcopy(self.qf).requires_grad_(False)
        self.qf_twin_target = copy.deepcopy(self.qf_twin).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((self.n_agents,), float(np.log(cfg["initial_alpha"]))))

    # ---- the actor ----------------------------------------------------------------------------
    def start_latent(self, obs: torch.Tensor, prior: torch.Tensor | None, noise: bool) -> torch.Tensor:
        """x_I: LAD starts from the historical probability p (raw, or centred so uniform p -> 0)."""
        return chain_start(self.cfg, (*obs.shape[:-1], self.n_actions), prior, noise)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return scaled_features(obs, self.obs_scale, self.cfg["obs_log1p"])

    def actor_logits(self, obs: torch.Tensor, agent: torch.Tensor | None, prior: torch.Tensor | None,
                     noise: bool = True) -> torch.Tensor:
        return acting_logits(self.actor, self.cfg, self.obs_scale, obs, agent, prior, noise)

    def _agent(self, batch) -> torch.Tensor | None:
        if self.n_agents == 1:
            return None
        return batch[AGENT].long()

    def _forward_inference(self, batch, **kwargs):
        logits = self.actor_logits(batch[Columns.OBS], self._agent(batch), batch.get(PRIOR), noise=False)
        return {Columns.ACTION_DIST_INPUTS: logits}

    def _forward_exploration(self, batch, **kwargs):
        logits = self.actor_logits(batch[Columns.OBS], self._agent(batch), batch.get(PRIOR), noise=True)
        return {Columns.ACTION_DIST_INPUTS: logits}

    # ---- training: grouped [E, m, ...] when n_agents > 1 ----------------------------------------
    def group(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.n_agents == 1 else x.reshape(self.n_agents, -1, *x.shape[1:])

    def q_values(self, obs: torch.Tensor, target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.features(obs)
        if target:
            return self.qf_target(s), self.qf_twin_target(s)
        return self.qf(s), self.qf_twin(s)

    def _forward_train(self, batch, **kwargs):
        """Everything the SAC losses need, grouped by agent; the losses are the learner's."""
        g = self.group
        obs, next_obs = g(batch[Columns.OBS]), g(batch[Columns.NEXT_OBS])
        prior = g(batch[PRIOR]) if PRIOR in batch else None
        next_prior = g(batch[NEXT_PRIOR]) if NEXT_PRIOR in batch else None
        logits = self.actor(self.features(obs), self.start_latent(obs, prior, True), None, noise=True)
        with torch.no_grad():
            next_logits = self.actor(self.features(next_obs), self.start_latent(next_obs, next_prior, True),
                                     None, noise=True)
            next_q1, next_q2 = self.q_values(next_obs, target=True)
        q1, q2 = self.q_values(obs)
        return {"logits": logits, "next_logits": next_logits, "q1": q1, "q2": q2,
                "next_q1": next_q1, "next_q2": next_q2}

    def soft_update_targets(self, tau: float) -> None:
        with torch.no_grad():
            for net, target in ((self.qf, self.qf_target), (self.qf_twin, self.qf_twin_target)):
                for p, tp in zip(net.parameters(), target.parameters()):
                    tp.lerp_(p, tau)
