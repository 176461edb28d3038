"""The discrete soft actor-critic loss of D2SAC and LAD (and their MLP-actor SAC twin).

Written to be checked line by line against CleanRL's `sac_atari.py` (Christodoulou 2019):
expectations over actions use the policy's probabilities instead of sampling. With a diffusion
actor the gradient of the actor loss flows back through every denoising step of the chain.
Ours on top, off by default: on demonstrated transitions (`training.demo_*`, policies/algorithms.py)
the actor imitates instead, the temperature does not learn, and a CQL term can join the critics'.

One Adam optimizer with three parameter groups (actor, critics, temperature) is exactly three
optimizers here: the three losses touch disjoint parameters (Q is detached in the actor loss, the
entropy is detached in the temperature loss) and Adam is element-wise. It saves two optimizer
passes per update, which matters at thousands of updates per run on two cores.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from policies.diffusion import policy_probs
from policies.rllib_modules import DEMO


class DiffusionSACLearner(TorchLearner):
    """Critic, actor and temperature losses; soft target update after every SGD step."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        cfg = self.config
        actor = [p for p in module.actor.parameters() if p.requires_grad]
        critics = list(module.qf.parameters()) + list(module.qf_twin.parameters())
        optimizer = torch.optim.Adam([
            {"params": actor, "lr": cfg.actor_lr},
            {"params": critics, "lr": cfg.critic_lr},
            {"params": [module.log_alpha], "lr": cfg.alpha_lr},
        ])
        self.register_optimizer(module_id=module_id, optimizer_name="sac", optimizer=optimizer,
                                params=actor + critics + [module.log_alpha])

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self.module[module_id]
        g = module.group
        n_actions = module.n_actions
        target_entropy = config.target_entropy_scale * math.log(n_actions)
        actions = g(batch[Columns.ACTIONS].long()).unsqueeze(-1)
        rewards = g(batch[Columns.REWARDS].float()) * config.reward_scale
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
            q_target = rewards + (1.0 - dones) * config.gamma * next_v
        q1_a = fwd_out["q1"].gather(-1, actions).squeeze(-1)
        q2_a = fwd_out["q2"].gather(-1, actions).squeeze(-1)
        # Huber, not MSE: late in an overloaded episode delays reach tens of seconds, and squared
        # errors of those drove the critic (then the policy) to diverge in our runs.
        critic_loss = F.smooth_l1_loss(q1_a, q_target) + F.smooth_l1_loss(q2_a, q_target)
        demo = g(batch[DEMO].float()) if DEMO in batch else torch.zeros_like(q1_a)
        if config.demo_cql_weight:
            # CQL (Kumar et al. 2020) on the demonstrations: push down every action's value
            # against the demonstrated one's, so the actor is not drawn to actions the
            # demonstrator never took, whose values the critics could only extrapolate.
            unseen = (torch.logsumexp(fwd_out["q1"], -1) - q1_a) + (torch.logsumexp(fwd_out["q2"], -1) - q2_a)
            critic_loss = critic_loss + config.demo_cql_weight * (demo * unseen).mean()

        # Actor: E_{a~pi}[alpha log pi(a|s) - min Q(s, a)], gradients through the whole chain;
        # on a demonstrated transition (training.demo_policy) the cross-entropy to its action.
        probs, log_p = policy_probs(fwd_out["logits"])
        min_q = torch.min(fwd_out["q1"], fwd_out["q2"]).detach()
        soft_q_loss = (probs * (alpha_a * log_p - min_q)).sum(-1)
        imitation = -log_p.gather(-1, actions).squeeze(-1)
        actor_loss = ((1.0 - demo) * soft_q_loss + demo * config.bc_weight * imitation).mean()

        # Temperature: move the policy's entropy towards the target entropy, on the agent's own
        # transitions only: a demonstration's actor loss has no temperature, and adapting it
        # there drove it to ~0 while the actor cloned (then the first SAC steps collapsed it).
        entropy = -(probs.detach() * log_p.detach()).sum(-1)
        alpha_loss = (log_alpha.exp() * (entropy - target_entropy) * (1.0 - demo)).mean()

        self.metrics.log_dict({
            "losses/critic": critic_loss.detach(), "losses/actor": actor_loss.detach(),
            "losses/alpha": alpha_loss.detach(), "charts/entropy": entropy.mean(),
            "charts/alpha": alpha.mean(), "charts/q": q1_a.detach().mean(),
            "charts/q_gap": (min_q.max(-1).values - min_q.mean(-1)).mean(),
            "charts/demo_share": demo.mean(),
            "charts/logit_scale": module.actor.logit_scale().detach().mean()
            if hasattr(module.actor, "logit_scale") else torch.tensor(1.0),
        }, key=module_id, window=1)
        return critic_loss + actor_loss + alpha_loss

    def _update(self, batch):
        out = super()._update(batch)
        for module_id in batch:
            self.module[module_id].soft_update_targets(self.config.tau)
        return out
