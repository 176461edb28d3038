"""Research options of the SAC agents as extensions: each one module behind a few hooks.

The env runner, the algorithm and the learner of `policies/sac/` each build the extensions of
their `SACOptions` (`build_extensions`) and call these hooks; a hook an extension does not
override does nothing, and an option that is off is simply absent. The hooks:

- env runner: `wrap_core` (e.g. a ledger of placements around the simulator), `action_source`
  (who acts instead of the learner: a demonstrator, a reused policy), `reward_processor` (rewards
  rewritten before the transitions leave the runner, e.g. hindsight credit);
- algorithm: `acting_source` (which action source acts this iteration), `wrap_replay` (where
  transitions are kept and how minibatches are drawn), `extra_updates`, `get_state`/`set_state`;
- learner: `loss_terms` (extra or replaced terms of the SAC losses).

Transitions chosen by an action source carry `by_source = 1` all the way to the learner.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

if TYPE_CHECKING:
    from policies.options import SACOptions


class ActionSource(Protocol):
    """Chooses actions instead of (or mixed with) the learner's, for the live rows of a step."""

    name: str
    needs_learner: bool        # whether the learner's actions must be computed too

    def decide(self, observed: np.ndarray, live: np.ndarray,
               learner_actions: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """-> (actions [len(live)], by_source [len(live)] bool); `observed` is every copy's
        observation, `learner_actions()` samples the learner's (call it only when needed)."""


class RewardProcessor(Protocol):
    """Rewrites rewards before transitions leave the runner (and may hold them back until final)."""

    def on_episode_end(self, row: int, episode: int) -> None:
        """Copy `row` finished episode number `episode` (called before the copy is reset)."""

    def process(self, transitions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The transitions ready to leave, with their final rewards (possibly fewer, possibly older)."""

    def reset(self) -> None:
        """Forget everything held back (a resume: held transitions are replay data, not saved)."""


class Extension:
    """One research option. Every hook is a no-op unless overridden."""

    name = "extension"

    def check(self, scenario) -> None:
        """Refuse, with a ConfigError naming the option, a scenario it cannot run on."""

    # -- env runner
    def wrap_core(self, core):
        return core

    def action_source(self, runner) -> ActionSource | None:
        return None

    def reward_processor(self, runner) -> RewardProcessor | None:
        return None

    # -- algorithm
    def acting_source(self, decisions: int) -> str | None:
        """The name of the action source that acts this iteration (`decisions` so far), or None."""
        return None

    def wrap_replay(self, replay, algorithm):
        return replay

    def extra_updates(self, decisions: int) -> int:
        return 0

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    # -- learner
    def loss_terms(self, terms, batch, config) -> None:
        """Change `terms` (a `policies.sac.learner.LossTerms`) in place."""


def build_extensions(options: "SACOptions") -> list[Extension]:
    """The extensions the options switch on, in a fixed order."""
    from policies.extensions.demonstrations import Demonstrations
    from policies.extensions.hindsight_credit import HindsightCredit
    from policies.extensions.policy_reuse import PolicyReuse

    out: list[Extension] = []
    if options.demonstrations is not None:
        out.append(Demonstrations(options.demonstrations))
    if options.hindsight_credit is not None:
        out.append(HindsightCredit(options.hindsight_credit))
    if options.policy_reuse is not None:
        out.append(PolicyReuse(options.policy_reuse))
    return out
