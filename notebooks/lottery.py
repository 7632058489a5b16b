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
# # The lottery-ticket baseline: iterative magnitude pruning with rewinding
#
# The procedure dynamic pruning is meant to replace (Frankle & Carbin 2019; rewinding per Frankle et al.
# 2020): train the dense network; prune `imp_rate` of the remaining weights by one global magnitude
# threshold; rewind the survivors to their values after `rewind_step` optimizer steps (0: the original
# initialisation); retrain with the mask fixed; repeat until `final_sparsity`, the last round landing
# exactly on it. Every level is a full training cycle of `epochs` epochs, so the cost adds up: that
# cost, next to dynamic pruning's single cycle, is what the `compare` notebook weighs.
#
# A stopped run continues from its last finished level (each level is saved as it finishes).

# %% tags=["parameters"]
experiment = "lottery/lenet_mnist_imp_s80_rewind0"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                                   # overlay from params/profiles/<profile>.yaml
overrides = {}                                      # any Config field, e.g. {"imp_rate": 0.5}
run_dir = None                                      # None: results/lab/<profile>/lottery/<name>

# %%
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import plots, records
from dynprune.config import resolve, runs_of
from dynprune.data import load_data
from dynprune.lottery import imp_levels, run_imp
from dynprune.runner import PROJECT, params_file

cfg = resolve(params_file(experiment), profile, overrides)
assert cfg.method == "imp", f"the lottery notebook runs method 'imp', this file says {cfg.method!r}"
run_dir = Path(run_dir) if run_dir else PROJECT / "results" / "lab" / profile / "lottery" / cfg.name
display(Markdown(f"**{cfg.name}** ({profile} profile): {cfg.description or 'no description'}"))
display(Markdown(records.markdown_table(["parameter", "value"], [(f"`{k}`", f"`{v}`") for k, v in cfg.to_dict().items()])))
levels = imp_levels(cfg.final_sparsity, cfg.imp_rate, cfg.imp_stops)
print(f"{len(levels)} pruning rounds after the dense training, {len(levels) + 1} training cycles of "
      f"{cfg.epochs} epochs each: " + ", ".join(f"{s:.4f}" for s in levels))

# %% [markdown]
# ## Training, level by level

# %%
summaries = {}
for run in runs_of(cfg):
    data = load_data(run.cfg)
    print(f"{run.folder}: data source: {data.source}")
    summaries[run.folder] = run_imp(run.cfg, data, run_dir / run.folder, profile)

# %% [markdown]
# ## Accuracy at every level
# Test accuracy of each level's final network against its sparsity (one line per seed), and the
# cumulative training cost of reaching it.

# %%
figure = plots.imp_levels({folder: summary["levels"] for folder, summary in summaries.items()})
figure.savefig(run_dir / "imp_levels.png", dpi=110, bbox_inches="tight")

# %%
rows = [(s, r["level"], f"{r['sparsity']:.4f}", f"{r['test_accuracy']:.2f}", r["cumulative_epochs"],
         f"{r['cumulative_seconds']:.1f}", f"{r['cumulative_flops']:.3g}")
        for s, summary in summaries.items() for r in summary["levels"]]
display(Markdown(records.markdown_table(["seed", "level", "sparsity", "test accuracy (%)", "epochs so far",
                                         "train time so far (s)", "train FLOPs so far"], rows)))
display(Markdown(records.results_table(list(summaries.values()), profile)))
