"""Ray Tune experiments: transfer with policy reuse across edge networks, hyper-parameter search.

`families` names the networks a policy transfers between, `experiment` is the typed experiment
(YAML), `trial` the Tune trainable, `stages` runs the sources then the transfer grid on Tune,
`metrics` the transfer metrics of Taylor & Stone, `recording` the MLflow parent/child runs,
`report` the summary table and plots, `search` the ASHA hyper-parameter search.
"""
