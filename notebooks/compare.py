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

from dynprune.analysis import compare
from dynprune.analysis.claims import claims
from dynprune.analysis.results import collect
from dynprune.config import params_file, params_root, resolve
from dynprune.foundations.storage import write_atomic
from dynprune.foundations.text_files import csv_text, json_text
from dynprune.report import figures, present
from dynprune.runs.paths import lab_run_dir, profile_results

cfg = resolve(params_file(experiment), profile, overrides)
inputs_dir = Path(inputs_dir) if inputs_dir else profile_results(profile)
run_dir = Path(run_dir) if run_dir else lab_run_dir("compare", profile, cfg.name)
display(Markdown(present.heading(cfg, profile, params_file(experiment))))

results = collect(inputs_dir, params_root(params_file(experiment)), profile, only=set(cfg.inputs))
inputs = [results.of(key) for key in cfg.inputs if results.of(key)]
missing = [f"{exp.key}/{r.folder} ({r.state})" for exp in inputs for r in exp.runs if r.state != "done"]
display(Markdown("**Not finished** (shown as missing, never filled in): " + (", ".join(f"`{m}`" for m in missing) or "none")))

# %% [markdown]
# ## Every method, side by side

# %%
rows = compare.comparison_rows(inputs)
write_atomic(run_dir / "comparison.csv", csv_text(rows, compare.COLUMNS))
table = compare.method_table(rows, compare.reference_method(rows))
display(Markdown(present.method_markdown(table) if rows else "no finished run to compare yet"))

# %% [markdown]
# ## Accuracy against sparsity and against cost
# IMP passes through every level on its way to its target: its line shows them (mean over seeds). Cost on a
# log scale: a method to the right paid more compute for its network.

# %%
summaries = [s for exp in inputs for s in exp.summaries()]
plots = {}
if rows:
    plots["accuracy_vs_sparsity"] = figures.accuracy_vs_sparsity(rows, summaries)
    plots["accuracy_vs_cost"] = figures.accuracy_vs_cost(rows)
levels = {f"{exp.name} seed {s['seed']}": s["levels"] for exp in inputs for s in exp.summaries() if s.get("levels")}
if levels and any(level.get("reinit_test_accuracy") is not None for ls in levels.values() for level in ls):
    plots["levels"] = figures.imp_levels(levels)

# %% [markdown]
# ## What the sources claim about these runs
# The claims of `params/claims.yaml` whose experiments are all inputs of this comparison (whether the dynamic
# mask is a winning ticket, whether dynamic pruning is cheaper than IMP at comparable accuracy, a published
# curve), each with its verdict computed from the runs above.

# %%
found = claims(results, cfg.tolerance, experiments=set(cfg.inputs))
display(Markdown(present.claims_markdown(found) if found else "No claim of params/claims.yaml is about these runs alone."))

# %%
for name, fig in plots.items():
    figures.save(fig, run_dir / f"{name}.png")
write_atomic(run_dir / "summary.json", json_text(dict(
    name=cfg.name, profile=profile, rows=len(rows), missing=missing, params=cfg.to_dict(),
    claims=[c.as_dict() for c in found],
    methods=[dict(method=t["method"], accuracy=t["accuracy"].mean, sd=t["accuracy"].sd, n=t["accuracy"].n,
                  low=t["accuracy"].low, high=t["accuracy"].high, flops=t["flops"], seconds=t["seconds"],
                  sparsity=t["sparsity"]) for t in table])))
