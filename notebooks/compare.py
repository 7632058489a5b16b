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
# # Dynamic pruning against the lottery-ticket procedure and pruning at initialisation
#
# This notebook only reads finished run folders (it never trains): every method was trained with the
# same model, data, recipe and epochs per training cycle. It shows what each method's ticket is worth
# (test accuracy of the final network, mean ± sample standard deviation over seeds) and what it cost to
# find: training epochs, wall time, and training FLOPs — dense (what ran here) and what a kernel that
# skips pruned weights would need.

# %% tags=["parameters"]
experiment = "compare/lenet_mnist_s80"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                       # whose results to read
overrides = {}                          # any CompareConfig field
run_dir = None                          # None: results/lab/<profile>/compare/<name>
inputs_dir = None                       # where the runs are; None: results/<profile>

# %%
import json
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import compare, plots, records
from dynprune.config import resolve
from dynprune.runner import PROJECT, params_file

cfg = resolve(params_file(experiment), profile, overrides)
inputs_dir = Path(inputs_dir) if inputs_dir else PROJECT / "results" / profile
run_dir = Path(run_dir) if run_dir else PROJECT / "results" / "lab" / profile / "compare" / cfg.name
params_root = params_file(experiment).parent.parent
display(Markdown(f"**{cfg.name}** ({profile} profile): {cfg.description}"))

summaries, missing = {}, []
for name in cfg.inputs:
    found, absent = compare.experiment_summaries(inputs_dir, name, params_root)
    summaries[name] = found
    missing += [f"{name}/{folder}" for folder in absent]
print("missing (shown as missing, never filled in):", ", ".join(missing) or "nothing")

# %% [markdown]
# ## One row per method and seed
# Written to `comparison.csv` in the run folder.

# %%
rows = compare.comparison_rows([s for name in cfg.inputs for s in summaries[name]])
records.write_atomic(run_dir / "comparison.csv", records.csv_text(rows, compare.COLUMNS))
display(Markdown(compare.method_table(rows)))

# %% [markdown]
# ## Accuracy against sparsity
# IMP passes through every level on its way to the target: its curve shows them (mean over seeds).

# %%
figures = {"accuracy_vs_sparsity": plots.accuracy_vs_sparsity(rows, [s for v in summaries.values() for s in v])}

# %% [markdown]
# ## Accuracy against cost
# Log scale: a method to the right paid more compute for its ticket.

# %%
figures["accuracy_vs_cost"] = plots.accuracy_vs_cost(rows)

# %% [markdown]
# ## Is the dynamic mask a winning ticket?

# %%
if cfg.ticket and cfg.dense and summaries.get(cfg.ticket) and summaries.get(cfg.dense):
    verdict = compare.ticket_verdict(summaries[cfg.ticket], [s["test_accuracy"] for s in summaries[cfg.dense]],
                                     cfg.tolerance)
    display(Markdown(compare.verdict_text(verdict, cfg.tolerance)))
else:
    print("no verdict: the ticket check or the dense baseline is missing")

# %%
for name, fig in figures.items():
    fig.savefig(run_dir / f"{name}.png", dpi=110, bbox_inches="tight")
records.write_atomic(run_dir / "summary.json", json.dumps(dict(name=cfg.name, profile=profile, rows=len(rows),
                                                              missing=missing, params=cfg.to_dict()), indent=2))
