"""Scoring a trained model: predicting a split and recording its scores, submission files,
comparisons with intervals, robustness to missing and degraded modalities."""
