"""Training: the train_and_evaluate loop, its step, checkpoints, sharding, and runs of many
trainings (sweeps, cross-validation)."""
