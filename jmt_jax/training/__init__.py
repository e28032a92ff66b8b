"""Training: the train_and_evaluate loop, its step, its metrics, and runs of many
trainings (sweeps, cross-validation)."""
