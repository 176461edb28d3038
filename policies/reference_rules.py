"""Two dedgeai rules beside greedy: the yardsticks of the agents benchmark, and demonstrators.

- `capacity-proportional`: a state-free random rule: each task goes to server a with probability
  f_a / sum(f). It reads nothing; it only spreads the load the way the capacities can take it.
  A learned policy that does not beat it has learned no more than that.
- `size-split`: a non-myopic rule that beats greedy: size-interval task assignment (SITA, from
  the server-farm literature). Greedy ("Opt-TS" of the public DEdgeAI code) sends every task
  where its own delay is least. At the design's load the servers are overloaded (about 783
  Gcycles of work arrive per slot against 656 Gcycles/s of capacity), so every queue grows for
  the whole episode and a task's delay is mostly the backlog it finds. The metric counts tasks,
  not work: keeping some servers' backlog near zero for the many small tasks and leaving the few
  big tasks to the rest lowers the mean, although the big tasks wait longer. With one threshold:
  a task is small when its work c*q is at most `theta` Gcycles; small tasks go, greedily, to the
  fastest servers whose capacity covers `cover` times the small tasks' expected work per slot
  (computed from the scenario's task distribution, not measured); big tasks go, greedily, to
  the other servers. It reads the same full network state greedy reads.

Both are our constructions, not the paper's. `benchmarks/agents/reference_rules.py` compares them
with greedy; `policies/catalog.py` names them (`size-split:THETA[:COVER]`,
`capacity-proportional`), for `aigc-edge evaluate` and as demonstrators.
"""
from __future__ import annotations

import numpy as np

from envs.dedgeai import DedgeaiConfig, dedgeai_layout

SIZE_SPLIT = "size-split"
CAPACITY_PROPORTIONAL = "capacity-proportional"


def small_work_per_slot(config: DedgeaiConfig, theta: float) -> float:
    """Expected Gcycles per slot, over all BSs, of tasks whose work is at most `theta`."""
    n_tasks = config.max_tasks
    if config.mode == "faithful":
        # Work is fixed per position; position p exists in a slot when the count exceeds p.
        c, q, _ = config.position_tasks()
        work = c * q
        present = (n_tasks - np.arange(n_tasks)) / n_tasks
        return float(config.n_bs * np.sum(present * work * (work <= theta)))
    a, b = config.work_per_step_gcycles
    steps = np.arange(config.steps[0], config.steps[1] + 1, dtype=np.float64)
    # c ~ U(a, b): E[c q ; c q <= theta] = q * integral_a^min(b, theta/q) c dc / (b - a).
    upper = np.clip(theta / steps, a, b)
    per_task = np.mean(steps * (upper ** 2 - a ** 2) / 2.0 / (b - a))
    return float(config.n_bs * (1 + n_tasks) / 2 * per_task)


class CapacityProportional:
    """State-free: server a with probability f_a / sum(f), seeded."""

    name = CAPACITY_PROPORTIONAL

    def __init__(self, config: DedgeaiConfig, seed: int = 0):
        capacity = config.es_capacities()
        self.p = capacity / capacity.sum()
        self.rng = np.random.default_rng(seed)

    def decide(self, obs: np.ndarray, state=None) -> np.ndarray:
        return self.rng.choice(self.p.size, size=len(obs), p=self.p)


class SizeSplit:
    """Greedy within a pool: small tasks in the fast pool, big ones in the rest."""

    def __init__(self, config: DedgeaiConfig, theta: float, cover: float = 1.0):
        if theta <= 0:
            raise ValueError(f"theta must be > 0 Gcycles, got {theta}")
        if cover <= 0:
            raise ValueError(f"cover must be > 0, got {cover}")
        self.name = f"{SIZE_SPLIT}(theta={theta:g}, cover={cover:g})"
        self.theta = theta
        self.layout = dedgeai_layout(config)
        capacity = config.es_capacities()
        need = cover * small_work_per_slot(config, theta) / config.slot_s
        self.small_pool = np.zeros(config.n_bs, dtype=bool)
        for server in np.argsort(-capacity, kind="stable"):
            if capacity[self.small_pool].sum() >= need:
                break
            self.small_pool[server] = True
        if self.small_pool.all():
            raise ValueError(f"theta={theta}: small tasks need {need:.0f} Gcycles/s, all the capacity "
                             f"({capacity.sum():.0f}); choose a smaller theta")
        self.small_pool_gcycles = float(capacity[self.small_pool].sum())
        self.small_work_gcycles = need / cover

    def decide(self, obs: np.ndarray, state) -> np.ndarray:
        small = self.layout.field(obs, "work_gcycles")[:, 0] <= self.theta
        allowed = np.where(small[:, None], self.small_pool[None, :], ~self.small_pool[None, :])
        return np.argmax(np.where(allowed, state.immediate_rewards(), -np.inf), axis=1)
