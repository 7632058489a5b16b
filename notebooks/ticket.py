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
# # Is the dynamic mask a winning ticket?
#
# A winning ticket (Frankle & Carbin 2019) is a mask that, applied to the *original* initialisation and
# trained in isolation, matches the dense network. This notebook takes the final mask of a finished
# dynamic-pruning run (`ticket_from`, same seed) and retrains it four ways, each for `epochs` epochs
# with the mask fixed:
#
# - **rewind_init**: from that run's own initial weights;
# - **rewind_k**: from its weights after `rewind_step` optimizer steps (when the run saved them);
# - **reinit**: from a fresh random initialisation;
# - **random_mask**: a random mask with exactly the same per-layer sparsity, from the initial weights.
#
# The verdict is drawn in the `compare` notebook, next to the dense baseline.

# %% tags=["parameters"]
experiment = "ticket/lenet_mnist_s80"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                      # overlay from params/profiles/<profile>.yaml
overrides = {}                         # any Config field
run_dir = None                         # None: results/lab/<profile>/ticket/<name>
inputs_dir = None                      # where the dynamic runs are; None: results/<profile>

# %%
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import records
from dynprune.config import resolve, runs_of
from dynprune.data import load_data
from dynprune.lottery import check_ticket
from dynprune.runner import PROJECT, params_file

cfg = resolve(params_file(experiment), profile, overrides)
assert cfg.method == "ticket_check", f"the ticket notebook runs method 'ticket_check', this file says {cfg.method!r}"
inputs_dir = Path(inputs_dir) if inputs_dir else PROJECT / "results" / profile
run_dir = Path(run_dir) if run_dir else PROJECT / "results" / "lab" / profile / "ticket" / cfg.name
display(Markdown(f"**{cfg.name}** ({profile} profile): {cfg.description or 'no description'}; "
                 f"masks from `{inputs_dir / cfg.ticket_from}`"))

# %%
summaries = {}  # the masks of each run come from the same seed (and grid point) of the dynamic run
for run in runs_of(cfg):
    summaries[run.folder] = check_ticket(run.cfg, load_data(run.cfg), inputs_dir / cfg.ticket_from / run.folder,
                                         run_dir / run.folder, profile)

# %%
variants = list(next(iter(summaries.values()))["variants"])
rows = [(folder, f"{summary['source_test_accuracy']:.2f}", *(f"{summary['variants'][v]:.2f}" for v in variants))
        for folder, summary in summaries.items()]
display(Markdown(records.markdown_table(["run", "dynamic run itself (%)", *(f"{v} (%)" for v in variants)], rows)))
