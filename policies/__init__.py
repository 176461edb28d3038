"""Agents and heuristics behind one Policy protocol (`base`), and how they are trained and judged.

- `catalog.make_policy(spec, scenario)`: every policy by name (heuristics, reference rules,
  trained artifacts, MLflow URIs); `heuristics`, `reference_rules`, `artifact` behind it.
- `registry`: the algorithms by name; `options`: their typed options; `sac/` (d2sac, lad,
  sac-mlp), `baselines/` (RLlib's PPO, DQN, SAC), `extensions/` (research options).
- `training.train(cfg, callbacks=...)`, `evaluation.evaluate(...)`, `tracking` (run state and MLflow).
"""
