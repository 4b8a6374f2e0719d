"""Model optimisation and profiling: measuring what each model costs on each node."""
