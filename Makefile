# One-command set-up: every target creates .venv (once) with the CPU build of torch.
# `make test` installs the core, every extra (`all`) and the test tools (`dev`): it tests them all.
# Elsewhere than on the project's machines, get a CPU torch from PyTorch's index with
#   make test TORCH_PIP_FLAGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_PIP_FLAGS ?=
# pytest workers: the default suite is sized for 2 cores
WORKERS ?= 2

.PHONY: install demo test test-slow test-all bench-speed notebooks docs clean

# re-execute every notebook from its jupytext source (notebooks/NN_name.py) into the paired
# .ipynb, outputs and figures included; ATTSOLVER_FAST=1 make notebooks for the short version
notebooks: $(STAMP)
	for f in notebooks/[0-9][0-9]_*.py; do \
		OMP_NUM_THREADS=1 $(BIN)/jupytext --to ipynb --execute "$$f" || exit 1; done

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

# the documentation site, into site/; strict: a broken link or API reference fails the build
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_FLAGS) -c requirements/constraints.txt torch
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev,all]"
	touch $(STAMP)

# the main job in < 3 min on 2 cores: noisy data, a trained corrector, the compare verdict and its plots (demo_out/)
demo: $(STAMP)
	$(BIN)/attsolver demo

# notebooks run in their fast mode (ATTSOLVER_FAST=1) as part of the default suite
test: $(STAMP)
	ATTSOLVER_FAST=1 $(BIN)/python -m pytest -m "not slow" -n $(WORKERS) -q tests --nbmake notebooks

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench-speed: $(STAMP)
	$(BIN)/attsolver bench speed --out benchmarks/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache site
