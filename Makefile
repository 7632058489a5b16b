# dynprune — `make help` lists what this does.
#
# Every experiment is a parameter file params/<notebook>/<name>.yaml, rendered through notebooks/<notebook>.py
# into results/<profile>/<notebook>/<name>.ipynb (+ .html, + its run folders). Python schedules the renders
# (dynprune/pipeline/schedule.py: what changed, in what order, how many at once): make only names the commands.
# Make never reads a parameter file or its name, and the variables below reach the commands through the
# environment ("$$PROFILE"), never pasted into a command line.

PROFILE ?= paper
LAUNCH  ?= local
ONLY    ?=
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
SETUP   := $(VENV)/.installed
GPUS    := $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
# Quick runs are small: on a CPU, one single-threaded notebook per core. Paper-scale runs: one notebook per
# GPU (each holds its own; see pipeline/render.py), or one at a time without GPUs.
JOBS    ?= $(if $(filter quick,$(PROFILE)),$(shell nproc 2>/dev/null || echo 1),$(if $(filter-out 0,$(GPUS)),$(GPUS),1))
export PROFILE LAUNCH ONLY JOBS

.PHONY: help experiments status results test mutate bench gpu-check lab FORCE

help:
	@echo "make experiments [PROFILE=quick]   render every experiment that changed into results/<profile>/ (default: paper)"
	@echo "                 [JOBS=n]          notebooks at once (default: one per core for quick, one per GPU for paper)"
	@echo "                 [LAUNCH=slurm]    each notebook as a Slurm job (resources: params/profiles/<profile>.yaml)"
	@echo "                 [ONLY='*/lenet_*,compare/*'] only the experiments <notebook>/<name> matching these patterns (and what they read)"
	@echo "make status [PROFILE=quick]        every experiment: done, running, failed, missing or stale"
	@echo "make results/quick/dynamic_pruning/lenet_s78.9.ipynb   render one experiment (and what it reads)"
	@echo "make results                       RESULTS.md (and the README's headline) from the finished paper-profile runs"
	@echo "make test                          the test suite (sets up .venv first)"
	@echo "make mutate [MODULE=dynprune/analysis/stats.py]   mutation testing (mutmut) of the modules that decide numbers"
	@echo "make bench                         speed and size measurements -> results/bench.json"
	@echo "make gpu-check                     GPU tests and a ResNet-18 epoch per precision -> results/gpu-check.json"
	@echo "make lab                           JupyterLab on this project; notebooks/*.py open as notebooks"
	@echo "Data: DYNPRUNE_DATA=/path/to/data (else ~/.cache/dynprune/data, downloaded when online)."

# Several single-threaded notebooks at once share the cores: one thread each.
experiments: | $(SETUP)
	@OMP_NUM_THREADS=$(if $(filter-out 1,$(JOBS)),1,$(OMP_NUM_THREADS)) \
	  $(PY) -m dynprune experiments --profile "$$PROFILE" --jobs "$$JOBS" --launch "$$LAUNCH" --only "$$ONLY"

# One notebook (and what it reads, where that changed): the profile is the target's second folder.
results/%.ipynb: FORCE | $(SETUP)
	@$(PY) -m dynprune experiments --target "$$NOTEBOOK" --jobs "$$JOBS" --launch "$$LAUNCH"
results/%.ipynb: export NOTEBOOK = $@

status: | $(SETUP)
	@$(PY) -m dynprune status --profile "$$PROFILE"

results: | $(SETUP)
	@$(PY) -m dynprune results --profile paper --out RESULTS.md --readme README.md

# Two test processes of one thread each (the suite is sized for two cores); the slowest tests are listed last.
# First the layers: no module may import from a layer above its own (pyproject.toml, [tool.importlinter]).
test: $(SETUP)
	$(VENV)/bin/lint-imports --no-cache
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist worksteal --durations=12

# Mutation testing of the modules that decide a run's numbers (all, or MODULE=dynprune/...py), each against the
# fast tests tests/mutation/targets.toml maps to it, in build/mutate/; tests/mutation/equivalents.txt lists the
# mutants that cannot be killed, with reasons. MODULE reaches the driver through the environment, which checks it.
MUTMUT := 3.8.1
MODULE ?=
mutate: $(SETUP)
	@$(PY) -c "import mutmut" 2>/dev/null || $(VENV)/bin/pip install -q "mutmut==$(MUTMUT)"
	OMP_NUM_THREADS=1 MODULE="$$MODULE" $(PY) tests/mutation/mutate.py
mutate: export MODULE := $(MODULE)

bench: $(SETUP)
	$(PY) -m dynprune.tools.bench --out results/bench.json

gpu-check: $(SETUP)
	$(PY) -m dynprune.tools.gpucheck --out results/gpu-check.json

# JupyterLab on the whole project (notebooks/, params/, results/ in its file browser), pinned; kernels get the
# same thread settings as a batch run of the profile.
JUPYTERLAB := 4.6.6
lab: $(SETUP)
	$(VENV)/bin/pip install -q "jupyterlab==$(JUPYTERLAB)"
	$(PY) -m ipykernel install --sys-prefix > /dev/null
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp notebooks/lab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(if $(filter-out 1,$(JOBS)),OMP_NUM_THREADS=1) $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_FLAGS)

FORCE:

$(SETUP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@
