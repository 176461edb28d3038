"""d2sac, lad and sac-mlp on RLlib's new API stack, split the way RLlib splits its algorithms:
`module` (the networks), `learner` (the SAC losses), `runner` (the env runner on the vectorised
core), `replay`, `algorithm` (the schedule) and `config` (the AlgorithmConfig)."""
