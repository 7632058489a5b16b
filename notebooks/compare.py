# %% [markdown]
# # Dynamic pruning against the lottery-ticket procedure and pruning at initialisation
#
# This notebook only reads finished run folders (it never trains): every method was trained with the same
# model, data, recipe and epochs per training cycle. It shows what each method's network is worth (test
# accuracy of the final network: mean ± sample standard deviation, 95 % interval, and the difference to
# dynamic pruning with Welch's 95 % interval — a difference is called one only where that interval excludes
# zero) and what it cost to find: epochs, wall time and training FLOPs, dense (what ran here) and what a
# kernel skipping pruned weights would need.

# %% tags=["parameters"]
experiment = "compare/lenet_mnist_s80"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                       # whose results to read
overrides = {}                          # any CompareConfig field
run_dir = None                          # None: results/lab/<profile>/compare/<name>
inputs_dir = None                       # where the runs are; None: results/<profile> (read only)

# %%
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import compare, plots, present
from dynprune.config import params_root as params_folder, resolve
from dynprune.records import csv_text, json_text, write_atomic
from dynprune.runner import batch_results, lab_run_dir, params_file

cfg = resolve(params_file(experiment), profile, overrides)
inputs_dir = Path(inputs_dir) if inputs_dir else batch_results(profile)
run_dir = Path(run_dir) if run_dir else lab_run_dir("compare", profile, cfg.name)
params_root = params_folder(params_file(experiment))
display(Markdown(present.heading(cfg, profile, params_file(experiment))))

runs, missing = {}, []
for name in cfg.inputs:
    found, absent = compare.experiment_runs(inputs_dir, name, params_root, profile)
    runs[name] = found
    missing += [f"{name}/{folder}" for folder in absent]
display(Markdown("**Missing runs** (shown as missing, never filled in): " + (", ".join(f"`{m}`" for m in missing) or "none")))

# %% [markdown]
# ## Every method, side by side

# %%
rows = compare.comparison_rows([r for name in cfg.inputs for r in runs[name]])
write_atomic(run_dir / "comparison.csv", csv_text(rows, compare.COLUMNS))
table = compare.method_table(rows, compare.reference_method(rows))
display(Markdown(compare.method_markdown(table) if rows else "no finished run to compare yet"))

# %% [markdown]
# ## Accuracy against sparsity and against cost
# IMP passes through every level on its way to its target: its line shows them (mean over seeds). Cost on a
# log scale: a method to the right paid more compute for its network.

# %%
figures = {}
if rows:
    figures["accuracy_vs_sparsity"] = plots.accuracy_vs_sparsity(rows, [r for rs in runs.values() for r in rs])
    figures["accuracy_vs_cost"] = plots.accuracy_vs_cost(rows)

# %% [markdown]
# ## Is the dynamic mask a winning ticket?

# %%
verdict = None
if cfg.ticket and cfg.dense and runs.get(cfg.ticket) and runs.get(cfg.dense):
    verdict = compare.ticket_verdict(runs[cfg.ticket], [r["test_accuracy"] for r in runs[cfg.dense]], cfg.tolerance)
    display(Markdown(compare.verdict_markdown(verdict)))
elif cfg.ticket:
    display(Markdown("**No verdict**: the ticket check or the dense baseline has not finished."))

# %% [markdown]
# ## Against a published curve
# Where the comparison follows a published recipe, its claims are checked level by level from the runs.

# %%
claims = []
if cfg.reference:
    from dynprune import claims as claim_rules
    claims = claim_rules.reference_claims(cfg.reference, runs)
    display(Markdown(claim_rules.claims_markdown(claims)))
    figures["levels"] = plots.imp_levels({r["folder"]: r["levels"] for rs in runs.values() for r in rs if r.get("levels")})

# %%
for name, fig in figures.items():
    fig.savefig(run_dir / f"{name}.png", dpi=110, bbox_inches="tight")
write_atomic(run_dir / "summary.json", json_text(dict(
    name=cfg.name, profile=profile, rows=len(rows), missing=missing, params=cfg.to_dict(),
    verdict=None if verdict is None else verdict["verdict"], claims=[c.as_dict() for c in claims],
    methods=[dict(method=t["method"], accuracy=t["accuracy"].mean, sd=t["accuracy"].sd, n=t["accuracy"].n,
                  low=t["accuracy"].low, high=t["accuracy"].high, flops=t["flops"], seconds=t["seconds"],
                  sparsity=t["sparsity"]) for t in table])))
