"""Benchmarks that print numbers: `python -m jmt_jax.benchmarks.<name> --help`."""
