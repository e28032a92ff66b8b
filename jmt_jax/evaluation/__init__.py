"""Scoring: predicting a split, the paper's metrics, ABAW files, comparisons with intervals,
robustness, plots."""
