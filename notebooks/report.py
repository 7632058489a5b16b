# %% [markdown]
# # Results report: what the sources claim, and what our runs say
#
# This notebook reads every run folder of one profile (it never trains) and sets each published number
# beside ours: the seed repository's 14 experiments, the later paper's (arXiv 2606.12278) and Frankle &
# Carbin's lottery-ticket procedure. Every verdict is computed from the runs each time it renders, never
# typed, and a run that has not finished, or was made by other training code or parameters (*stale*), is
# shown as such, never filled in. The same sections make the page `results/<profile>/index.html` (opened
# from disk, no server) and, as Markdown, RESULTS.md (`make results`).

# %% tags=["parameters"]
experiment = "report/summary"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"              # whose results to read
overrides = {}                 # any ReportConfig field, e.g. {"tolerance": 1.0}
run_dir = None                 # None: results/lab/<profile>/report/<name> (its figures, and from JupyterLab its page)
inputs_dir = None              # where the runs are; None: results/<profile> (read only)

# %%
from pathlib import Path

from dynprune.analysis.claims import claims as computed_claims
from dynprune.analysis.results import collect
from dynprune.config import params_file, params_root, resolve
from dynprune.report import sections as report
from dynprune.report.page import write_page
from dynprune.runs.paths import lab_run_dir, profile_results

cfg = resolve(params_file(experiment), profile, overrides)
inputs_dir = Path(inputs_dir) if inputs_dir else profile_results(profile)
run_dir = Path(run_dir) if run_dir else lab_run_dir("report", profile, cfg.name)
page = report.page_path(run_dir, inputs_dir, cfg.name)   # the batch page, or one inside run_dir
base = report.notebook_base(run_dir, inputs_dir, cfg.name)
results = collect(inputs_dir, params_root(params_file(experiment)), profile)
parts = [report.show(report.introduction(results), base)]

# %% [markdown]
# ## What the sources claim, and what our runs say
# One row per claim of `params/claims.yaml`: every published accuracy, Frankle & Carbin's claims about their
# recipe, whether dynamic pruning finds its network at a fraction of IMP's training compute, whether its mask
# is a winning ticket. A claim none of whose runs has finished says *not run yet* and carries no verdict.

# %%
claims = computed_claims(results, cfg.tolerance)
parts.append(report.show(report.claims_section(results, claims, cfg.tolerance), base))

# %% [markdown]
# ## Key figures
# Accuracy against sparsity per network and data set, the published points overlaid by source; accuracy
# against the training compute each method paid for its network (dynamic pruning, IMP, pruning at
# initialisation); and the seed's hyperparameter studies. Only finished runs are drawn: each caption names
# what is missing or stale.

# %%
parts.append(report.show(report.figures_section(results, run_dir), base))

# %% [markdown]
# ## What the sparsity buys
# A masked network is as large and as slow as the dense one until it is exported sparsely; where a run
# was exported, its file size and CPU speed beside its accuracy.

# %%
parts.append(report.show(report.export_section(results), base))

# %% [markdown]
# ## Every experiment
# One row per experiment (per grid point with a grid), in four groups: the seed's, the later paper's,
# Frankle & Carbin's and this project's own. Hardware, profile and training code are stated once per table
# when every row shares them. Within each grid experiment, every point is set against the first, with the
# interval of the difference.

# %%
for section in report.experiment_sections(results):
    parts.append(report.show(section, base, heading=True))
parts.append(report.show(report.grid_differences(results), base, heading=True))

# %% [markdown]
# ## Dynamic pruning against IMP and pruning at initialisation
# Each comparison's methods side by side, from the same run folders.

# %%
for section in report.comparison_sections(results):
    parts.append(report.show(section, base, heading=section.level > 2))

# %% [markdown]
# ## Deviations from the sources
# Where this project does not do exactly what a source did, and why (`docs/method.md`).

# %%
parts.append(report.show(report.deviations_section(results), base))

# %% [markdown]
# ## The page
# Every section above, with links to every rendered notebook, written as a static page.

# %%
parts.append(report.notebooks_section(results))
write_page(page, report.title(profile), parts)
print(f"wrote {page}")
