# %% [markdown]
# # Dynamic pruning: a sparse network from a single training run
#
# Instead of the lottery-ticket loop (train dense, prune, rewind, retrain, repeat), this run prunes *while it
# trains*. A schedule sets a target sparsity at the start of every epoch (or every few steps); the prunable
# weights (every Conv2d and Linear `weight`) are ranked — by magnitude, or by the `criterion` the file names
# (`taylor`, `movement`) — under **one global threshold** over the weights still active, and the lowest are
# masked until exactly that fraction is zero. Masks only ever lose entries, and pruned weights are re-masked
# after every optimizer step, so they are exactly zero whenever the network is used. The same notebook trains
# the dense baseline (`final_sparsity: 0`), the pruning-at-initialisation baselines (`method: random`,
# `random_layerwise`, `snip`) and RigL (`method: rigl`), which keeps its sparsity fixed from the first step and
# moves its masks while it trains (docs/method.md).
#
# The test set is evaluated once, on the final model; a validation split, when there is one, comes from the
# training set and is never augmented. To run another experiment or change a parameter, edit the cell below
# (`overrides` takes any field of `dynprune.config.Config`); runs started here go to `results/lab/`.

# %% tags=["parameters"]
experiment = "dynamic_pruning/lenet_s78.9"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                           # overlay from params/profiles/<profile>.yaml
overrides = {}                              # e.g. {"epochs": 5, "final_sparsity": 0.9}
run_dir = None                              # None: results/lab/<profile>/dynamic_pruning/<name>

# %%
from pathlib import Path

from IPython.display import HTML, Markdown, display

from dynprune.config import params_file, resolve
from dynprune.pipeline.experiment import finished_runs, run_experiment
from dynprune.report import figures, present
from dynprune.runs.paths import lab_run_dir

cfg = resolve(params_file(experiment), profile, overrides)
run_dir = Path(run_dir) if run_dir else lab_run_dir("dynamic_pruning", profile, cfg.name)
display(Markdown(present.heading(cfg, profile, params_file(experiment))))

# %% [markdown]
# ## Training
# One run per seed (and per grid point). A run that finished before with exactly these parameters and this
# training code is read from its folder; an interrupted one resumes from its checkpoint; a folder holding a
# run of other parameters or code is moved to `stale/` inside it, never deleted. Each run's every epoch is
# in its folder's `train.log` and `history.csv`; a few are shown here. A finished sparse run is exported and
# measured (file size and CPU speed against the dense network) where the current sparse kernels have not
# measured it yet.

# %%
outcomes = run_experiment(cfg, run_dir, profile, log=present.epoch_log(cfg.epochs))
print(present.outcomes_line(outcomes))
finished = finished_runs(cfg, outcomes)

# %% [markdown]
# ## Result
# Test accuracy of each final model (never a best epoch). With several seeds: mean ± sample standard
# deviation and the 95 % interval of the mean. With a grid: one row per grid point, every run folded below.

# %%
display(Markdown(present.results_markdown(finished)))

# %%
if cfg.grid:
    grid_figure = figures.accuracy_over_grid(finished, cfg.grid)

# %% [markdown]
# ## Accuracy and loss per epoch

# %%
curves = figures.training_curves({f"{r['label']} seed {r['seed']}".strip(): r["history"] for r in finished})

# %% [markdown]
# ## Scheduled and achieved sparsity
# The achieved sparsity is counted from the masks; it sits exactly on the target after every update (first run).

# %%
first = finished[0]
sparsity = figures.sparsity_curve(first["history"])

# %% [markdown]
# ## Where the zeros are
# One global threshold lets layers end up with very different sparsities (first run).

# %%
layers = figures.layer_sparsity(first["layers"])

# %% [markdown]
# ## Parameters

# %%
display(HTML(present.parameters_html(cfg)))
