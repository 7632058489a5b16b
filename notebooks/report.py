# %% [markdown]
# # Results report
#
# Every finished run of one profile, read from its run folder (nothing is trained here), next to the
# number its source reported: the seed repository's notebooks and the later paper. How to read it:
#
# - **ours** is the test accuracy of the final model (never a best epoch), mean ± sample standard
#   deviation over the seeds the parameter file lists, with n; a run that has not finished shows as
#   *missing* and is never filled in.
# - The **profile** says at which scale a number was made: `quick` runs are CPU-sized (few epochs, a data
#   subset, narrow networks) and are not comparable with the reported numbers; `paper` runs are.
# - CIFAR-10 on machines without internet is a lossy JPEG copy of the data set (the notebook of each run
#   names its source): it costs a few points against the original.
#
# The same content is written to `results/<profile>/index.html`, with links to every rendered notebook.

# %% tags=["parameters"]
experiment = "report/summary"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"              # whose results to read
overrides = {}
run_dir = None                 # None: results/lab/<profile>/report/<name>
inputs_dir = None              # where the runs are; None: results/<profile>

# %%
from pathlib import Path

from IPython.display import Markdown, display

from dynprune import plots, report
from dynprune.config import resolve
from dynprune.records import markdown_table, write_atomic
from dynprune.runner import PROJECT, params_file

cfg = resolve(params_file(experiment), profile, overrides)
results = Path(inputs_dir) if inputs_dir else PROJECT / "results" / profile
run_dir = Path(run_dir) if run_dir else PROJECT / "results" / "lab" / profile / "report" / cfg.name
run_dir.mkdir(parents=True, exist_ok=True)
params_root = params_file(experiment).parent.parent
sections = []  # (heading, markdown) for index.html; links there are relative to results/<profile>/


def show(heading, notebook_md, index_md=None):
    display(Markdown(f"## {heading}\n\n{notebook_md}"))
    sections.append((heading, notebook_md if index_md is None else index_md))


# %% [markdown]
# ## The seed's experiments

# %%
for heading, names in (("The seed's experiments", report.SEED_EXPERIMENTS),
                       ("The later paper's experiments", report.PAPER_EXPERIMENTS),
                       ("This project's own experiments (no published number)", report.other_experiments(params_root))):
    show(heading, markdown_table(report.RESULT_HEADER, report.results_rows(results, names, params_root, "../")),
         markdown_table(report.RESULT_HEADER, report.results_rows(results, names, params_root)))

# %% [markdown]
# ## Accuracy against sparsity
# The later paper's ResNet-18 sweep (one parameter file per sparsity) and every experiment with a grid over
# `final_sparsity`: mean ± standard deviation over seeds; the dense run of a series as a dotted line.

# %%
series = report.sweep_series(results, params_root)
if series:
    fig = plots.accuracy_vs(series, "final sparsity", "accuracy against sparsity (mean ± std over seeds)", baseline_at=0.0)
    fig.savefig(run_dir / "sparsity_sweep.png", dpi=100, bbox_inches="tight")
    sections.append(("Accuracy against sparsity", f"![sweep]({run_dir.relative_to(results).as_posix()}/sparsity_sweep.png)"))
else:
    show("Accuracy against sparsity", "missing: no run of a sparsity sweep has finished")

# %% [markdown]
# ## The hyperparameter studies
# Each panel puts an experiment beside the baseline it varies (first seed; validation accuracy where the
# run has a validation split, else training accuracy).

# %%
curves = {}
for title, names in report.STUDIES.items():
    found = {}
    for name in names:
        first_point, _ = next(iter(report.experiment_runs(results, f"dynamic_pruning/{name}", params_root).values()))
        if first_point:
            found[name] = first_point[0]["history"]
    if found:
        curves[title] = found
if curves:
    fig = plots.studies(curves)
    fig.savefig(run_dir / "studies.png", dpi=90, bbox_inches="tight")
    sections.append(("The hyperparameter studies", f"![studies]({run_dir.relative_to(results).as_posix()}/studies.png)"))
else:
    show("The hyperparameter studies", "missing: none of their runs has finished")

# %% [markdown]
# ## Dynamic pruning against the lottery-ticket procedure
# From the `compare` runs: the same model, data and epochs per training cycle for every method.

# %%
tables = report.comparison_tables(results)
show("Dynamic pruning against the lottery-ticket procedure",
     "\n\n".join(f"**{name}** ([notebook](../compare/{name}.html))\n\n{t}" for name, t in tables.items())
     or "missing: no comparison has finished",
     "\n\n".join(f"**{name}** ([notebook](compare/{name}.html))\n\n{t}" for name, t in tables.items())
     or "missing: no comparison has finished")

# %% [markdown]
# ## Every rendered notebook

# %%
notebooks = report.rendered_notebooks(results)
show("Every rendered notebook", report.markdown_links(notebooks, "../"), report.markdown_links(notebooks))
write_atomic(results / "index.html", report.index_html(f"dynprune results: {profile} profile", sections))
print(f"wrote {results / 'index.html'}")
