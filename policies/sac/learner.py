"""The discrete soft actor-critic loss of D2SAC and LAD (and their MLP-actor SAC twin).

Written to be checked line by line against CleanRL's `sac_atari.py` (Christodoulou 2019):
expectations over actions use the policy's probabilities instead of sampling. With a diffusion
actor the gradient of the actor loss flows back through every denoising step of the chain.
Extensions (`policies/extensions/`) may change the terms before they are reduced (`loss_terms`).

One Adam optimizer with three parameter groups (actor, critics, temperature) is exactly three
optimizers here: the three losses touch disjoint parameters (Q is detached in the actor loss, the
entropy is detached in the temperature loss) and Adam is element-wise. It saves two optimizer
passes per update, which matters at thousands of updates per run on two cores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from policies.diffusion import policy_probs
from policies.extensions import build_extensions
from policies.sac.module import BY_SOURCE


@dataclass
class LossTerms:
    """The SAC losses before reduction, with what an extension needs to change them."""
    critic: torch.Tensor          # scalar: both critics' Huber losses
    actor_rows: torch.Tensor      # per row: E_{a~pi}[alpha log pi(a|s) - min Q(s, a)]
    alpha_rows: torch.Tensor      # per row: alpha (H(pi) - target entropy)
    q1: torch.Tensor              # per row and action
    q2: torch.Tensor
    q1_a: torch.Tensor            # per row, of the action taken
    q2_a: torch.Tensor
    log_p: torch.Tensor           # per row and action: log pi(.|s)
    actions: torch.Tensor         # per row, [..., 1]
    by_source: torch.Tensor       # per row: 1.0 where an action source chose the action
    metrics: dict = field(default_factory=dict)


class DiffusionSACLearner(TorchLearner):
    """Critic, actor and temperature losses; soft target update after every SGD step."""

    def build(self) -> None:
        super().build()
        self.extensions = build_extensions(self.config.options)

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        options = self.config.options
        actor = [p for p in module.actor.parameters() if p.requires_grad]
        critics = list(module.qf.parameters()) + list(module.qf_twin.parameters())
        optimizer = torch.optim.Adam([
            {"params": actor, "lr": options.actor_lr},
            {"params": critics, "lr": options.critic_lr},
            {"params": [module.log_alpha], "lr": options.alpha_lr},
        ])
        self.register_optimizer(module_id=module_id, optimizer_name="sac", optimizer=optimizer,
                                params=actor + critics + [module.log_alpha])

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self.module[module_id]
        options = config.options
        g = module.group
        target_entropy = options.target_entropy_scale * math.log(module.n_actions)
        actions = g(batch[Columns.ACTIONS].long()).unsqueeze(-1)
        rewards = g(batch[Columns.REWARDS].float()) * options.reward_scale
        dones = g(batch[Columns.TERMINATEDS].float())
        # alpha per agent, broadcast over that agent's rows (and actions).
        log_alpha = module.log_alpha if module.n_agents == 1 else module.log_alpha[:, None]
        alpha = log_alpha.exp().detach()
        alpha_a = alpha.unsqueeze(-1)

        # Critic: soft Bellman target, the expectation over a' taken with pi(.|s') exactly.
        with torch.no_grad():
            next_probs, next_log_p = policy_probs(fwd_out["next_logits"])
            next_min_q = torch.min(fwd_out["next_q1"], fwd_out["next_q2"])
            next_v = (next_probs * (next_min_q - alpha_a * next_log_p)).sum(-1)
            q_target = rewards + (1.0 - dones) * options.gamma * next_v
        q1_a = fwd_out["q1"].gather(-1, actions).squeeze(-1)
        q2_a = fwd_out["q2"].gather(-1, actions).squeeze(-1)
        # Huber, not MSE: late in an overloaded episode delays reach tens of seconds, and squared
        # errors of those drove the critic (then the policy) to diverge in our runs.
        critic_loss = F.smooth_l1_loss(q1_a, q_target) + F.smooth_l1_loss(q2_a, q_target)

        # Actor: E_{a~pi}[alpha log pi(a|s) - min Q(s, a)], gradients through the whole chain.
        probs, log_p = policy_probs(fwd_out["logits"])
        min_q = torch.min(fwd_out["q1"], fwd_out["q2"]).detach()
        soft_q_loss = (probs * (alpha_a * log_p - min_q)).sum(-1)

        # Temperature: move the policy's entropy towards the target entropy.
        entropy = -(probs.detach() * log_p.detach()).sum(-1)
        terms = LossTerms(critic=critic_loss, actor_rows=soft_q_loss,
                          alpha_rows=log_alpha.exp() * (entropy - target_entropy),
                          q1=fwd_out["q1"], q2=fwd_out["q2"], q1_a=q1_a, q2_a=q2_a, log_p=log_p,
                          actions=actions, by_source=g(batch[BY_SOURCE].float()))
        for extension in self.extensions:
            extension.loss_terms(terms, batch, config)
        actor_loss, alpha_loss = terms.actor_rows.mean(), terms.alpha_rows.mean()

        self.metrics.log_dict({
            "losses/critic": terms.critic.detach(), "losses/actor": actor_loss.detach(),
            "losses/alpha": alpha_loss.detach(), "charts/entropy": entropy.mean(),
            "charts/alpha": alpha.mean(), "charts/q": q1_a.detach().mean(),
            "charts/q_gap": (min_q.max(-1).values - min_q.mean(-1)).mean(),
            "charts/logit_scale": module.actor.logit_scale().detach().mean()
            if hasattr(module.actor, "logit_scale") else torch.tensor(1.0),
            **terms.metrics,
        }, key=module_id, window=1)
        return terms.critic + actor_loss + alpha_loss

    def _update(self, batch):
        out = super()._update(batch)
        options = self.config.options
        for module_id in batch:
            self.module[module_id].soft_update_targets(options.tau)
        return out
