# The two commands a new user needs: `make train` and `make test`.
# Both create .venv when it is missing. torch is pinned in the same pip command as the package,
# which makes pip pick the small CPU wheel on CPU-only machines instead of a multi-GB CUDA build;
# override TORCH for another build, e.g. `make train TORCH=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: help train test test-fast lint clean-logs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)" -e ".[dev,optuna,slurm]"
	touch $@

train: $(VENV)/.installed  ## train the default main job on the embedded dataset (CPU)
	$(PY) train.py experiment=quickstart stage=pipeline

# -n auto: one pytest-xdist worker per core. --dist loadgroup sends the tests marked xdist_group(<name>) to one
# worker, so the trained run they share is made once; the other tests go wherever a worker is free.
TEST_ARGS ?= -n auto --dist loadgroup

test: $(VENV)/.installed  ## run the whole test suite
	$(PY) -m pytest $(TEST_ARGS)

test-fast: $(VENV)/.installed  ## skip the slow end-to-end subprocess runs
	$(PY) -m pytest $(TEST_ARGS) -m "not slow"

lint: $(VENV)/.installed  ## ruff
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-logs:  ## delete Hydra run folders (outputs/, multirun/)
	rm -rf outputs multirun
