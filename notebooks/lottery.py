# %% [markdown]
# # The lottery-ticket baseline: iterative magnitude pruning with rewinding
#
# The procedure dynamic pruning is meant to replace (Frankle & Carbin 2019; rewinding as in Frankle et al.
# 2020): train the dense network; prune the trained network by magnitude; rewind the survivors to their state
# after `rewind_step` optimizer steps (0: the initialisation) — weights, learning-rate schedule position and
# data order — and train the remaining steps with the mask fixed; repeat until `final_sparsity`. Pruning is
# one global threshold (`imp_rate` of the remaining weights per round) or layer by layer with per-layer rates
# (`prune_scope: layerwise`, `imp_layer_rates`). With `imp_reinit`, each level's mask is also trained from a
# fresh initialisation (Frankle & Carbin's control). Every level is a training cycle: that cost, beside
# dynamic pruning's single cycle, is what the `compare` notebooks weigh. A stopped run continues from its
# last finished level.

# %% tags=["parameters"]
experiment = "lottery/lenet_mnist_imp_s80_rewind0"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                                   # overlay from params/profiles/<profile>.yaml
overrides = {}                                      # any Config field, e.g. {"imp_rate": 0.5}
run_dir = None                                      # None: results/lab/<profile>/lottery/<name>

# %%
from pathlib import Path

from IPython.display import HTML, Markdown, display

from dynprune import plots, present, runs
from dynprune.config import ConfigError, resolve, runs_of
from dynprune.records import load_run
from dynprune.runner import lab_run_dir, params_file

cfg = resolve(params_file(experiment), profile, overrides)
if cfg.method != "imp":
    raise ConfigError(f"the lottery notebook runs method 'imp'; {experiment} says {cfg.method!r}")
run_dir = Path(run_dir) if run_dir else lab_run_dir("lottery", profile, cfg.name)
display(Markdown(present.heading(cfg, profile, params_file(experiment))))

# %% [markdown]
# ## Training, level by level

# %%
finished = {}
for run in runs_of(cfg):
    outcome = runs.ensure(run, run_dir / run.folder, profile, root=run_dir, log=present.epoch_log(run.cfg.epochs, lines=0))
    finished[run.folder] = load_run(outcome.folder) | {"label": run.label}

# %% [markdown]
# ## Result
# The final level's network: test accuracy (mean ± sample standard deviation and 95 % interval over seeds)
# and what it cost — every training cycle it took.

# %%
points = {}
for r in finished.values():
    points.setdefault(r["label"], []).append(r)
for label, group in points.items():
    display(Markdown((f"### {label}\n\n" if label else "") + present.runs_markdown(group)))

# %% [markdown]
# ## Accuracy at every level
# Test accuracy of each level's network against the weights remaining (mean over seeds, with the 95 %
# interval), beside the random re-initialisation control where it ran, and the training cost so far.

# %%
figure = plots.imp_levels({folder: r["levels"] for folder, r in finished.items()})
display(Markdown(present.levels_markdown({folder: r["levels"] for folder, r in finished.items()})))

# %% [markdown]
# ## Parameters

# %%
display(HTML(present.parameters_html(cfg)))
