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
run_dir = None                              # None: results/lab/<profile>/dynamic_pruning/<name>

# %%
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import plots, records
from dynprune.config import resolve, run_seeds
from dynprune.data import load_data
from dynprune.pruning import target_sparsity
from dynprune.runner import PROJECT, params_file
from dynprune.train import train

cfg = resolve(params_file(experiment), profile, overrides)
run_dir = Path(run_dir) if run_dir else PROJECT / "results" / "lab" / profile / "dynamic_pruning" / cfg.name
display(Markdown(f"**{cfg.name}** ({profile} profile): {cfg.description or 'no description'}"))
display(Markdown(records.markdown_table(["parameter", "value"], [(f"`{k}`", f"`{v}`") for k, v in cfg.to_dict().items()])))

# %% [markdown]
# ## The schedule
# The target in force during each epoch. Between `prune_start_epoch` and `prune_end_epoch` it rises to
# `final_sparsity`; afterwards the network fine-tunes at that sparsity. (Methods that prune at
# initialisation hold `final_sparsity` from the first step.)

# %%
schedule_figure = plots.schedule_preview(cfg, target_sparsity)

# %% [markdown]
# ## Training
# One run per seed, each with its own validation split and data order. Each run saves a checkpoint after
# every epoch and resumes from it when started again (after a kill, say). One line per epoch: achieved
# sparsity (zeros in the masks over all prunable weights) next to the scheduled target, learning rate,
# train loss / accuracy and, with a validation split, validation loss / accuracy.

# %%
runs = {}
for seed in run_seeds(cfg):
    seed_cfg = cfg.replace(seed=seed, seeds=[])
    data = load_data(seed_cfg)
    print(f"data source: {data.source}")
    runs[seed] = train(seed_cfg, data, checkpoint=run_dir / f"seed{seed}" / "checkpoint.pt")

# %% [markdown]
# ## Accuracy and loss

# %%
curves = plots.training_curves({f"seed {s}": r.history for s, r in runs.items()})

# %% [markdown]
# ## Scheduled vs achieved sparsity
# The achieved sparsity is counted from the masks; it must sit exactly on the target in every epoch.

# %%
sparsity = plots.sparsity_curve(next(iter(runs.values())).history)

# %% [markdown]
# ## Where the zeros are
# One global threshold lets layers end up with very different sparsities (first seed shown).

# %%
layers = plots.layer_sparsity(next(iter(runs.values())).masks.layer_report())

# %% [markdown]
# ## Result
# Test accuracy of each final model (never a best epoch), evaluated once.

# %%
figures = {"schedule": schedule_figure, "training_curves": curves, "sparsity": sparsity, "layer_sparsity": layers}
summaries = {s: records.save_run(r, run_dir / f"seed{s}", profile, figures) for s, r in runs.items()}
display(Markdown(records.results_table(list(summaries.values()), profile)))
