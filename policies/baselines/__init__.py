"""RLlib's own PPO, DQN and SAC as learned baselines: `config` builds them, `replay` fixes RLlib
2.60's turn-based replay and resume, `episodes` counts their finished episodes."""
