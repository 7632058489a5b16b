# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Dynamic pruning: a sparse network from a single training run
#
# Instead of the lottery-ticket loop (train dense, prune, rewind, retrain, repeat), this run prunes
# *while it trains*. At the start of every epoch a schedule sets a target sparsity; the prunable weights
# (every Conv2d and Linear `weight`) are ranked by magnitude under **one global threshold**, taken over
# the weights that are still active, and the smallest ones are masked until exactly that fraction is
# zero. Masks only ever lose entries (no regrowth). Pruned weights stay exactly zero in the forward pass,
# in the gradient and after every optimizer step.
#
# What you get: the sparse network and its masks (the "ticket"), the per-layer sparsity, and the
# training history. The test set is evaluated once, on the final model; the validation split (when there
# is one) is carved from the training set and never augmented.
#
# Edit the cell below to run another experiment (`params/<experiment>.yaml`), another profile
# (`params/profiles/<profile>.yaml`), or to change any parameter through `overrides` — the keys are
# the fields of `dynprune.config.Config`, validated before anything trains.

# %% tags=["parameters"]
experiment = "dynamic_pruning/lenet_s78.9"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                           # overlay from params/profiles/<profile>.yaml
overrides = {}                              # e.g. {"epochs": 5, "final_sparsity": 0.9}
run_dir = None                              # None: results/lab/<profile>/<name>

# %%
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import plots, records
from dynprune.config import resolve
from dynprune.data import load_data
from dynprune.pruning import target_sparsity
from dynprune.runner import params_file, PROJECT
from dynprune.train import train

cfg = resolve(params_file(experiment), profile, overrides)
run_dir = Path(run_dir) if run_dir else PROJECT / "results" / "lab" / profile / cfg.name
display(Markdown(f"**{experiment}** ({profile} profile): {cfg.description or 'no description'}"))
display(Markdown("| parameter | value |\n|---|---|\n"
                 + "\n".join(f"| `{k}` | `{v}` |" for k, v in cfg.to_dict().items())))

# %% [markdown]
# ## The schedule
# The target in force during each epoch. Between `prune_start_epoch` and `prune_end_epoch` it rises to
# `final_sparsity`; afterwards the network fine-tunes at that sparsity.

# %%
figures = {"schedule": plots.schedule_preview(cfg, target_sparsity)}

# %% [markdown]
# ## Data

# %%
data = load_data(cfg)
print(f"source: {data.source}")
print(f"train {len(data.train[1])} images, validation {0 if data.val is None else len(data.val[1])}, "
      f"test {len(data.test[1])}; {data.channels} channel(s) of {data.side}x{data.side}; classes: {data.classes}")

# %% [markdown]
# ## Training
# One line per epoch: achieved sparsity (zeros in the masks over all prunable weights) next to the
# scheduled target, learning rate, train loss / accuracy and, with a validation split, validation loss /
# accuracy.

# %%
run = train(cfg, data)

# %% [markdown]
# ## Accuracy and loss

# %%
figures["training_curves"] = plots.training_curves(run.history)

# %% [markdown]
# ## Scheduled vs achieved sparsity
# The achieved sparsity is counted from the masks; it must sit exactly on the target in every epoch.

# %%
figures["sparsity"] = plots.sparsity_curve(run.history)

# %% [markdown]
# ## Where the zeros are
# One global threshold lets layers end up with very different sparsities.

# %%
figures["layer_sparsity"] = plots.layer_sparsity(run.masks.layer_report())

# %% [markdown]
# ## Result
# Test accuracy of the final model (never a best epoch), evaluated once.

# %%
summary = records.save_run(run, run_dir, profile, figures)
rows = [("test accuracy", f"{summary['test_accuracy']:.2f} %"),
        ("sparsity (target)", f"{summary['sparsity']:.4f} ({summary['target_sparsity']:.4f})"),
        ("remaining prunable weights", f"{summary['remaining_weights']:,} of {summary['prunable_weights']:,}"),
        ("pruned weights that are not exactly zero", f"{summary['pruned_but_nonzero']}"),
        ("epochs", summary["epochs"]),
        ("training wall time", f"{summary['train_seconds']:.1f} s"),
        ("profile", profile),
        ("hardware", f"{summary['hardware']} ({summary['device']})"),
        ("data", summary["data_source"]),
        ("run folder", str(run_dir))]
display(Markdown("| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)))
