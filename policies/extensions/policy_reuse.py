"""Policy reuse (pi-reuse, Fernandez & Veloso 2006): explore a new network with an old policy.

Reconstructed: Tian et al. (IEEE TCC 2025) name "policy reuse mechanisms" for fine-tuning across
edge networks without saying which; this is the pi-reuse rule of Fernandez & Veloso, fitted to an
off-policy SAC learner. At decision h of an episode the frozen source policy acts with probability

    psi_h = psi x episode_decay^(e - 1) x upsilon^h        (e: the episode's number, 1-based)

and the learner (sampling its own policy) otherwise. psi decays per decision and resets each
episode, as in the paper; `episode_decay` < 1 also lowers the start of every later episode (our
variant, off at 1.0). Every transition, reused or not, goes to replay and trains the learner:
the critics learn the source's actions' values and the actor is pulled toward the better ones.
Reused transitions carry `by_source = 1` (the loss treats them like the learner's own). The
paper's Q-learner becomes SAC here: on-policy learners (PPO) cannot take actions they did not
choose (their log-probabilities would be wrong), so PPO gets weight initialisation only.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from envs.config import StrictModel
from policies.extensions import Extension

SOURCE = "reuse"


class PolicyReuseOptions(StrictModel):
    source: str = Field(min_length=1, description="the reused policy: an artifact or run folder, or an MLflow URI")
    psi: float = Field(1.0, ge=0.0, le=1.0, description="probability the source acts at an episode's first decision")
    upsilon: float = Field(0.99, gt=0.0, le=1.0,
                           description="psi's decay per decision within an episode (collab-exit: ~500 per episode)")
    episode_decay: float = Field(1.0, gt=0.0, le=1.0,
                                 description="psi's decay per episode (1.0: reset each episode, as the paper)")
    seed: int = Field(0, description="seed of the reuse draws")


def reuse_probability(options: PolicyReuseOptions, decision: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """psi_h for decision h (0-based within its episode) of episode e (1-based)."""
    return (options.psi * options.episode_decay ** (np.maximum(episode, 1) - 1.0)
            * options.upsilon ** np.asarray(decision, np.float64))


class ReusedPolicy:
    """The source policy as an action source: it acts on the live rows drawn with psi_h."""

    name = SOURCE
    needs_learner = True

    def __init__(self, options: PolicyReuseOptions, policy, runner):
        self.options, self.policy, self.runner = options, policy, runner
        self.rng = np.random.default_rng(options.seed + 104729 * (runner.worker_index or 0))

    def decide(self, observed, live, learner_actions):
        runner = self.runner
        psi = reuse_probability(self.options, runner.ep_len[live], runner.ep_start[live])
        reused = self.rng.random(live.size) < psi
        actions = learner_actions()
        if reused.any():
            actions = actions.copy()
            actions[reused] = self.policy.decide(observed, runner.core.network_state())[live][reused]
        return actions, reused


class PolicyReuse(Extension):
    name = "policy_reuse"

    def __init__(self, options: PolicyReuseOptions):
        self.options = options

    def _source(self, scenario):
        from policies.artifact import load_policy

        return load_policy(self.options.source, scenario, transfer=True)

    def check(self, scenario) -> None:
        self._source(scenario)

    def action_source(self, runner):
        return ReusedPolicy(self.options, self._source(runner.scenario), runner)

    def acting_source(self, decisions: int) -> str | None:
        return SOURCE
