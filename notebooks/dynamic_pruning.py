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
# zero. Masks only ever lose entries (no regrowth). Pruned weights are re-masked after every optimizer
# step, so they are exactly zero in every forward pass.
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
from dynprune.config import resolve, runs_of
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
# One run per seed (and per grid point, when the file has a `grid`), each with its own validation split
# and data order. A run that already finished with exactly these parameters and this version of the
# `dynprune` code is read from its folder instead of trained again; an interrupted one resumes from its
# checkpoint (saved after every epoch). One line per epoch: achieved sparsity (zeros in the masks over all
# prunable weights) next to the scheduled target, learning rate, train loss / accuracy and, with a
# validation split, validation loss / accuracy.

# %%
finished = {}  # run folder -> summary, history and layers of that run
for run in runs_of(cfg):
    folder = run_dir / run.folder
    if records.finished_summary(folder, run.cfg) is not None:
        print(f"{run.folder}: finished before with these parameters and this code; read from {folder}")
    else:
        data = load_data(run.cfg)
        print(f"{run.folder}: data source: {data.source}")
        trained = train(run.cfg, data, checkpoint=folder / "checkpoint.pt")
        records.save_run(trained, folder, profile, plots.run_figures(trained) | {"schedule": plots.schedule_preview(run.cfg, target_sparsity)})
    finished[run.folder] = records.load_run(folder)

# %% [markdown]
# ## Accuracy and loss

# %%
curves = plots.training_curves({folder: r["history"] for folder, r in finished.items()})

# %% [markdown]
# ## Scheduled vs achieved sparsity
# The achieved sparsity is counted from the masks; it must sit exactly on the target in every epoch
# (first run shown; every run's own figure is in its folder).

# %%
first = next(iter(finished.values()))
sparsity = plots.sparsity_curve(first["history"])

# %% [markdown]
# ## Where the zeros are
# One global threshold lets layers end up with very different sparsities (first run shown).

# %%
layers = plots.layer_sparsity(first["layers"])

# %% [markdown]
# ## Result
# Test accuracy of each final model (never a best epoch), evaluated once; with several seeds, their mean ±
# sample standard deviation. With a grid, one table per grid point and the accuracy against the first
# parameter of the grid.

# %%
points = records.by_grid_point(finished)
for label, summaries in points.items():
    display(Markdown((f"### {label}\n\n" if label else "") + records.results_table(summaries, profile)))
if cfg.grid:
    grid_figure = plots.accuracy_over_grid(points, next(iter(cfg.grid)))
