"""Cross-validated evaluation of a finished training run on real data: out-of-fold predictions,
metrics with subject bootstrap CIs, per-fold bias correction, baselines and the figure."""
