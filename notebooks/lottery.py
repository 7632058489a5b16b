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

from dynprune.config import ConfigError, params_file, resolve
from dynprune.pipeline.experiment import finished_runs, run_experiment
from dynprune.report import figures, present
from dynprune.runs.paths import lab_run_dir

cfg = resolve(params_file(experiment), profile, overrides)
if cfg.method != "imp":
    raise ConfigError(f"the lottery notebook runs method 'imp'; {experiment} says {cfg.method!r}")
run_dir = Path(run_dir) if run_dir else lab_run_dir("lottery", profile, cfg.name)
display(Markdown(present.heading(cfg, profile, params_file(experiment))))

# %% [markdown]
# ## Training, level by level

# %%
outcomes = run_experiment(cfg, run_dir, profile, log=present.epoch_log(cfg.epochs, lines=0))
print(present.outcomes_line(outcomes))
finished = finished_runs(cfg, outcomes)

# %% [markdown]
# ## Result
# The final level's network: test accuracy (mean ± sample standard deviation and 95 % interval over seeds)
# and what it cost — every training cycle it took.

# %%
display(Markdown(present.results_markdown(finished)))

# %% [markdown]
# ## Accuracy at every level
# Test accuracy of each level's network against the weights remaining (mean over seeds, with the 95 %
# interval), beside the random re-initialisation control where it ran, and the training cost so far.

# %%
levels = {f"{r['label']} seed {r['seed']}".strip(): r["levels"] for r in finished}
figure = figures.imp_levels(levels)
display(Markdown(present.levels_markdown(levels)))

# %% [markdown]
# ## Parameters

# %%
display(HTML(present.parameters_html(cfg)))
