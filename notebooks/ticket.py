# %% [markdown]
# # Is the dynamic mask a winning ticket?
#
# A winning ticket (Frankle & Carbin 2019) is a mask that, applied to the *original* initialisation and
# trained in isolation, matches the dense network — and does so *because* of those initial values. This
# notebook takes the final mask of a finished dynamic-pruning run (`ticket_from`, same seed and grid point)
# and retrains it four ways, each with the mask fixed:
#
# - **rewind_init**: from that run's own initial weights, for all `epochs`;
# - **rewind_k**: from its state after `rewind_step` steps (weights, learning rate, data order), for the rest;
# - **reinit**: from a fresh random initialisation (same data order);
# - **random_mask**: a random mask with exactly the same per-layer sparsity, from the initial weights.
#
# The verdict, with the dense baseline and 95 % intervals, is drawn in the `compare` notebook.

# %% tags=["parameters"]
experiment = "ticket/lenet_mnist_s80"  # params/<experiment>.yaml, or a path to a .yaml file
profile = "quick"                      # overlay from params/profiles/<profile>.yaml
overrides = {}                         # any Config field
run_dir = None                         # None: results/lab/<profile>/ticket/<name>
inputs_dir = None                      # where the dynamic runs are; None (in JupyterLab): trained in results/lab/

# %%
from pathlib import Path

from IPython.display import HTML, Markdown, display

from dynprune.analysis import stats
from dynprune.config import ConfigError, params_file, resolve
from dynprune.pipeline.experiment import run_experiment
from dynprune.report import present
from dynprune.runs.paths import lab_run_dir, results_root

cfg = resolve(params_file(experiment), profile, overrides)
if cfg.method != "ticket_check":
    raise ConfigError(f"the ticket notebook runs method 'ticket_check'; {experiment} says {cfg.method!r}")
run_dir = Path(run_dir) if run_dir else lab_run_dir("ticket", profile, cfg.name)
display(Markdown(present.heading(cfg, profile, params_file(experiment))))
if inputs_dir is None:  # in JupyterLab: the dynamic runs it needs, trained (or reused) under results/lab/
    inputs_dir = results_root() / "lab" / profile
    source = resolve(params_file(cfg.ticket_from), profile)
    run_experiment(source, inputs_dir / cfg.ticket_from, profile, log=present.epoch_log(source.epochs, lines=0))
inputs_dir = Path(inputs_dir)
display(Markdown(f"Masks from `{cfg.ticket_from}`."))

# %%
outcomes = run_experiment(cfg, run_dir, profile, log=present.epoch_log(cfg.epochs, lines=0), inputs=inputs_dir,
                          export=False)
print(present.outcomes_line(outcomes))
finished = {o.folder.relative_to(run_dir.resolve()).as_posix(): o.summary for o in outcomes}

# %% [markdown]
# ## Result
# Test accuracy of each retrained network; the last row is the mean with its 95 % interval.

# %%
variants = list(next(iter(finished.values()))["variants"])
rows = [(folder, f"{s['source_test_accuracy']:.2f}", *(f"{s['variants'][v]:.2f}" for v in variants))
        for folder, s in finished.items()]
if len(finished) > 1:
    rows.append(("mean", stats.summarize([s["source_test_accuracy"] for s in finished.values()]).text(),
                 *(stats.summarize([s["variants"][v] for s in finished.values()]).text() for v in variants)))
display(Markdown(present.markdown_table(["run", "dynamic run itself (%)", *(f"{v} (%)" for v in variants)], rows)))

# %% [markdown]
# ## Parameters

# %%
display(HTML(present.parameters_html(cfg)))
