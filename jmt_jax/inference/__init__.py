"""Running a trained model on a person's own recordings (see `jmt_jax.inference.predict`)."""
