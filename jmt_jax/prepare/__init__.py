"""Preparation of the real datasets from their published layouts: `python -m jmt_jax.prepare`."""
