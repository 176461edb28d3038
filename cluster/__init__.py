"""How things run on Ray: the `aigc-edge` CLI, local-or-cluster connection, job submission, MLflow defaults."""
