"""Can an actor network represent a placement rule at all? Supervised cloning, no RL.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/agents/clone_capacity.py [--steps 10000]
        [--teacher-episodes 10] [--episodes 5]

On dedgeai-corrected (shared form), each teacher (greedy; the size-split rule, 0.74x greedy)
plays `--teacher-episodes` episodes; each actor (the sac-mlp actor and D2SAC's diffusion actor,
each with a flat network and with a per-action one, `model.network`) is trained on those
decisions alone by cross-entropy, `--steps` Adam steps of 256 rows (as `training.demonstrations.pretrain_updates`),
then acts on `--episodes` fresh episodes by argmax and by sampling. Reports the agreement with
the teacher on a held-out episode and the delays against greedy on the same episodes.

Why: agents started from size-split demonstrations clone it poorly (argmax 8-16x greedy), and no
agent finds it alone. Greedy and the rule both take an argmin over servers of a function of each
server's own state; a flat MLP has to learn that function once per output, a per-action network
once. Writes benchmarks/results/agents/clone_capacity.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from envs.scenarios import load_scenario, make_core  # noqa: E402
from policies.registry import algorithm_config  # noqa: E402
from policies.evaluation import evaluate  # noqa: E402
from policies.catalog import make_policy  # noqa: E402

SCENARIO, OVERRIDES = "dedgeai-corrected", ["form=shared"]
TEACHERS = ("greedy", "size-split:1.75:0.9")
# (algo, network, hidden): the per-action networks run every hidden layer once per action, so
# they get a quarter of the width (about 2x the flat network's cost per SGD step).
ACTORS = (("sac-mlp", "flat", 128), ("sac-mlp", "per-action", 32),
          ("d2sac", "flat", 128), ("d2sac", "per-action", 32))
EVAL_SEED, HELD_OUT_SEED = 20_000, 30_000


class ActorPolicy:
    """The module's actor acting on observations (argmax, or sampled with a seeded generator)."""

    def __init__(self, module, name: str, sample: bool, seed: int = 1):
        self.module, self.name, self.sample = module, name, sample
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def decide(self, obs: np.ndarray, state=None) -> np.ndarray:
        logits = self.module.actor_logits(torch.as_tensor(obs), None, None, noise=self.sample)
        if self.sample:
            return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator)[:, 0].numpy()
        return logits.argmax(-1).numpy()


def teacher_decisions(scen, teacher, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(observations, actions) of `episodes` episodes played together by the teacher."""
    core = make_core(scen, num_envs=episodes, seed=seed)
    live = np.ones(episodes, dtype=bool)
    obs_parts, act_parts = [], []
    while live.any():
        obs = core.observe()
        actions = teacher.decide(obs, core.network_state())
        obs_parts.append(obs[live])
        act_parts.append(actions[live])
        live &= ~core.step(actions, active=None if live.all() else live).done
    return np.concatenate(obs_parts), np.concatenate(act_parts).astype(np.int64)


def build_module(algo: str, network: str, hidden: int, scen, seed: int):
    cfg = algorithm_config(algo, {"scenario": SCENARIO, "overrides": OVERRIDES}, num_envs=1, seed=seed,
                           model={"network": network, "hidden": hidden, "critic_hidden": hidden})
    spec = cfg.rl_module_spec
    core = make_core(scen, 1, 0)
    spec.observation_space = gym.spaces.Box(-np.inf, np.inf, (core.layout.dim,), np.float32)
    spec.action_space = gym.spaces.Discrete(core.encoding.n)
    torch.manual_seed(seed)
    return spec.build()


def clone(module, obs: np.ndarray, actions: np.ndarray, steps: int, seed: int) -> float:
    """Cross-entropy to the teacher's actions; returns the seconds it took."""
    opt = torch.optim.Adam(module.actor.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    obs_t, act_t = torch.as_tensor(obs), torch.as_tensor(actions)
    started = time.perf_counter()
    for step in range(steps):
        rows = torch.as_tensor(rng.integers(0, len(obs), 256))
        loss = F.cross_entropy(module.actor_logits(obs_t[rows], None, None, noise=True), act_t[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 2000 == 0:
            print(f"    step {step + 1}: cross-entropy {loss.item():.3f}", flush=True)
    return time.perf_counter() - started


@torch.no_grad()
def agreement(module, obs: np.ndarray, actions: np.ndarray) -> float:
    logits = torch.cat([module.actor_logits(torch.as_tensor(part), None, None, noise=False)
                        for part in np.array_split(obs, max(1, len(obs) // 4096))])
    return float((logits.argmax(-1).numpy() == actions).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10_000, help="cross-entropy steps of 256 rows")
    ap.add_argument("--teacher-episodes", type=int, default=10, help="episodes the teacher plays (training data)")
    ap.add_argument("--episodes", type=int, default=5, help="fresh evaluation episodes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if min(args.steps, args.teacher_episodes, args.episodes) < 1:
        ap.error("--steps, --teacher-episodes and --episodes must be >= 1")
    torch.set_num_threads(1)
    scen = load_scenario(SCENARIO, OVERRIDES)
    greedy = evaluate(scen, "greedy", episodes=args.episodes, seed=EVAL_SEED)["mean_delay_s"]
    def ratio(delay: float) -> str:
        return f"{delay:.2f} ({delay / greedy:.3f}x)"

    rows = [f"| greedy | - | {ratio(greedy)} | - | - |"]
    for spec in TEACHERS:
        teacher = make_policy(spec, scen)
        own = evaluate(scen, teacher, episodes=args.episodes, seed=EVAL_SEED)["mean_delay_s"]
        rows.append(f"| {spec} (teacher) | - | {ratio(own)} | - | - |")
        obs, actions = teacher_decisions(scen, teacher, args.teacher_episodes, args.seed)
        held_obs, held_actions = teacher_decisions(scen, teacher, 1, HELD_OUT_SEED)
        print(f"{spec}: {own / greedy:.3f}x greedy; {len(obs):,} decisions to clone", flush=True)
        for algo, network, hidden in ACTORS:
            module = build_module(algo, network, hidden, scen, args.seed)
            print(f"  {algo} actor, {network} network (hidden {hidden})", flush=True)
            seconds = clone(module, obs, actions, args.steps, args.seed)
            agree = agreement(module, held_obs, held_actions)
            delays = {mode: evaluate(scen, ActorPolicy(module, f"{algo}-{network}-{mode}", mode == "sampled"),
                                     episodes=args.episodes, seed=EVAL_SEED)["mean_delay_s"]
                      for mode in ("argmax", "sampled")}
            print(f"    agreement {agree:.1%}; argmax {delays['argmax'] / greedy:.3f}x, sampled "
                  f"{delays['sampled'] / greedy:.3f}x greedy; {seconds:.0f} s", flush=True)
            rows.append(f"| {algo} actor, {network} (hidden {hidden}), cloning {spec} | {agree:.1%} | "
                        f"{ratio(delays['argmax'])} | {ratio(delays['sampled'])} | {seconds:.0f} |")
    lines = ["# Cloning a placement rule: flat vs per-action networks", "",
             f"Generated by `benchmarks/agents/clone_capacity.py --steps {args.steps} --teacher-episodes "
             f"{args.teacher_episodes} --episodes {args.episodes} --seed {args.seed}` on {SCENARIO} (shared "
             f"form): every actor learns from the teacher's decisions on {args.teacher_episodes} episodes by "
             f"cross-entropy alone ({args.steps:,} Adam steps of 256 rows, lr 1e-3), then acts on "
             f"{args.episodes} fresh episodes (the same for every row). Agreement: the share of a held-out "
             "episode's decisions where the actor's argmax is the teacher's action.", "",
             "| policy | agreement | argmax: delay (s) | sampled: delay (s) | cloning time (s) |",
             "|---|---:|---:|---:|---:|", *rows]
    out = ROOT / "benchmarks" / "results" / "agents" / "clone_capacity.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
