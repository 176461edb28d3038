"""Demonstrations (DQfD's idea, Hester et al. 2018, in SAC's actor): start from a demonstrator.

The first `decisions` decisions are taken by `policy` (any policy `policies.catalog.make_policy`
knows: a heuristic, `size-split:THETA[:COVER]`, a trained artifact). On every replayed
demonstration the actor's loss is `bc_weight` x the cross-entropy to the demonstrated action
instead of SAC's and the temperature does not learn, while the critics learn from every
transition alike. Then, once: `pretrain_updates` SGD steps on the demonstrations alone, before
the agent first acts. `batch_share` > 0 keeps the demonstrations apart for the whole run, that
share of every minibatch; `cql_weight` > 0 adds a conservative (CQL, Kumar et al. 2020) critic
term on them. Ours, not the papers' agents.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from envs.config import StrictModel
from policies.extensions import Extension

SOURCE = "demo"


class DemonstrationOptions(StrictModel):
    policy: str = Field(min_length=1, description="who demonstrates: a heuristic, size-split:THETA[:COVER], an artifact")
    decisions: int = Field(ge=1, description="decisions the demonstrator takes at the start")
    pretrain_updates: int = Field(0, ge=0, description="SGD steps on the demonstrations alone, once, after them")
    batch_share: float = Field(0.0, ge=0.0, lt=1.0,
                               description="> 0: demonstrations kept apart all run, this share of every minibatch")
    cql_weight: float = Field(0.0, ge=0.0, description="> 0: a conservative (CQL) critic term on demonstrations")
    bc_weight: float = Field(1.0, ge=0.0, description="weight of the actor's cross-entropy to demonstrated actions")


class Demonstrator:
    """The demonstrator as an action source: it decides every live row (the learner does not act)."""

    name = SOURCE
    needs_learner = False

    def __init__(self, policy, core):
        self.policy, self.core = policy, core

    def decide(self, observed, live, learner_actions):
        actions = self.policy.decide(observed, self.core.network_state())[live]
        return actions, np.ones(live.size, bool)


class KeptDemonstrations:
    """The agent's replay plus the demonstrations kept apart: `batch_share` of every agent's rows
    of a minibatch come from them (all of them while the agent's own buffer is not ready; none
    once they are lost: replay is not checkpointed)."""

    def __init__(self, own, kept, batch_share: float):
        self.own, self.kept, self.batch_share = own, kept, batch_share

    def add(self, data: dict) -> None:
        by_source = data["by_source"]
        if not by_source.any():
            self.own.add(data)
            return
        for buffer, rows in ((self.kept, by_source), (self.own, ~by_source)):
            if rows.any():
                buffer.add({k: v[rows] for k, v in data.items() if isinstance(v, np.ndarray)})

    def ready(self, m: int) -> bool:
        return self.own.ready(m) or self.kept.ready(m)

    def sample(self, m: int, k: int = 1) -> dict[str, np.ndarray]:
        if not self.kept.ready(m):
            from_kept = 0
        else:
            from_kept = m if not self.own.ready(m) else round(self.batch_share * m)
        return self.own.sample_mixed([(self.kept, from_kept), (self.own, m - from_kept)], m, k)


class Demonstrations(Extension):
    name = "demonstrations"

    def __init__(self, options: DemonstrationOptions):
        self.options = options
        self.pretrained = False

    def check(self, scenario) -> None:
        from policies.catalog import make_policy

        make_policy(self.options.policy, scenario, field="training.demonstrations.policy")

    # -- env runner
    def action_source(self, runner):
        from policies.catalog import make_policy

        policy = make_policy(self.options.policy, runner.scenario, runner.seed,
                             field="training.demonstrations.policy")
        return Demonstrator(policy, runner.core)

    # -- algorithm
    def acting_source(self, decisions: int) -> str | None:
        return SOURCE if decisions < self.options.decisions else None

    def wrap_replay(self, replay, algorithm):
        if not self.options.batch_share:
            return replay
        # Agents decide about equally often: twice an agent's share leaves room for the spread.
        n_agents, decisions = replay.E, self.options.decisions
        per_agent = decisions if n_agents == 1 else -(-2 * decisions // n_agents)
        seed = algorithm.config.seed
        kept = replay.sibling(per_agent, seed=None if seed is None else seed + 1)
        return KeptDemonstrations(replay, kept, self.options.batch_share)

    def extra_updates(self, decisions: int) -> int:
        """DQfD's pre-training: the demonstrations alone, once, before the agent first acts."""
        if self.pretrained or decisions < self.options.decisions:
            return 0
        self.pretrained = True
        return self.options.pretrain_updates

    def get_state(self) -> dict:
        return {"pretrained": self.pretrained}

    def set_state(self, state: dict) -> None:
        self.pretrained = bool(state.get("pretrained", False))

    # -- learner
    def loss_terms(self, terms, batch, config) -> None:
        import torch

        demo, o = terms.by_source, self.options
        if o.cql_weight:
            # Push down every action's value against the demonstrated one's, so the actor is not
            # drawn to actions the demonstrator never took, whose values the critics could only
            # extrapolate.
            unseen = ((torch.logsumexp(terms.q1, -1) - terms.q1_a)
                      + (torch.logsumexp(terms.q2, -1) - terms.q2_a))
            terms.critic = terms.critic + o.cql_weight * (demo * unseen).mean()
        imitation = -terms.log_p.gather(-1, terms.actions).squeeze(-1)
        terms.actor_rows = (1.0 - demo) * terms.actor_rows + demo * o.bc_weight * imitation
        # The temperature learns from the agent's own transitions only: a demonstration's actor
        # loss has no temperature, and adapting it there drove it to ~0 while the actor cloned
        # (then the first SAC steps collapsed it).
        terms.alpha_rows = terms.alpha_rows * (1.0 - demo)
        terms.metrics["charts/demo_share"] = demo.mean()
