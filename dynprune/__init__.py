"""dynprune: dynamic magnitude pruning in one training run.

Modules by concern: config (parameters), pruning (masks, thresholds, schedules), models, data and
augment (tensors and batch augmentations), train (the loop), records (run folders), plots, runner
(headless notebooks), cli.
"""
__version__ = "0.1.0"
