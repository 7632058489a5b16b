# dynprune — `make help` lists what this does.
#
# Every experiment is a parameter file params/<notebook>/<name>.yaml, rendered through
# notebooks/<notebook>.py into results/<profile>/<notebook>/<name>.ipynb (+ .html, + run folder).
# Make reruns a notebook only when it, its parameters, the profile or the dynprune sources change.

PROFILE ?= paper
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
SETUP   := $(VENV)/.installed
CORE    := $(wildcard dynprune/*.py)
RESULTS := results/$(PROFILE)
# Quick runs are small: on a CPU, one single-threaded notebook per core renders the set ~1.5x faster than
# one two-threaded notebook at a time. Paper-scale runs share one accelerator, so they go one at a time.
JOBS    ?= $(if $(filter quick,$(PROFILE)),$(shell nproc 2>/dev/null || echo 1),1)

notebooks_of = $(patsubst params/%.yaml,$(RESULTS)/%.ipynb,$(sort $(wildcard params/$(1)/*.yaml)))
DYNAMIC := $(call notebooks_of,dynamic_pruning)
LOTTERY := $(call notebooks_of,lottery)
TICKET  := $(call notebooks_of,ticket)
COMPARE := $(call notebooks_of,compare)
REPORT  := $(call notebooks_of,report)
# Make starts targets in this order: the IMP notebooks (the longest, and needed by nothing else) first, so
# that the short ones fill the cores at the end instead of one long run finishing alone.
EXPERIMENTS := $(LOTTERY) $(DYNAMIC) $(TICKET) $(COMPARE) $(REPORT)

.PHONY: help experiments test bench lab clean-results
.DELETE_ON_ERROR:

help:
	@echo "make experiments [PROFILE=quick]   render every experiment into results/<profile>/ (default profile: paper)"
	@echo "                 [JOBS=n]          notebooks at once (default: one per core for quick, 1 for paper)"
	@echo "make test                          run the test suite (sets up .venv first)"
	@echo "make bench                         speed ratios of pruning and of the data path -> results/bench.json"
	@echo "make lab                           open JupyterLab; the notebooks/*.py open as notebooks"
	@echo "make $(RESULTS)/dynamic_pruning/lenet_s78.9.ipynb   render one experiment"
	@echo "make clean-results [PROFILE=...]   delete results/<profile>/"
	@echo "Data: DYNPRUNE_DATA=/path/to/data (else ~/.cache/dynprune/data, downloaded when online)."

experiments: | $(SETUP)
	$(if $(filter-out 1,$(JOBS)),OMP_NUM_THREADS=1) $(MAKE) --no-print-directory -j$(JOBS) $(EXPERIMENTS)

# The notebook is the first path component of the stem: dynamic_pruning/mnist_val -> notebooks/dynamic_pruning.py
.SECONDEXPANSION:
$(RESULTS)/%.ipynb: params/%.yaml notebooks/$$(firstword $$(subst /, ,$$*)).py params/profiles/$(PROFILE).yaml $(CORE) | $(SETUP)
	$(PY) -m dynprune notebook $@

# A ticket check retrains the masks of the run its file names in `ticket_from:`; a comparison reads the
# runs its file lists under `inputs:`. Both are rerun when those runs change.
yaml_values = $(patsubst %,$(RESULTS)/%.ipynb,$(shell sed -n 's/^$(2)//p' $(1)))
$(foreach f,$(wildcard params/ticket/*.yaml),$(eval $(RESULTS)/ticket/$(notdir $(f:.yaml=.ipynb)): $(call yaml_values,$(f),ticket_from: *)))
$(foreach f,$(wildcard params/compare/*.yaml),$(eval $(RESULTS)/compare/$(notdir $(f:.yaml=.ipynb)): $(call yaml_values,$(f), *- *)))
# The report (and results/<profile>/index.html) reads everything else.
$(REPORT): $(DYNAMIC) $(LOTTERY) $(TICKET) $(COMPARE)

test: $(SETUP)
	$(PY) -m pytest -q

bench: $(SETUP)
	$(PY) -m dynprune.bench --out results/bench.json

lab: $(SETUP)
	$(VENV)/bin/pip install -q jupyterlab
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp notebooks/lab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) notebooks/

$(SETUP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

clean-results:
	rm -rf $(RESULTS)
