# terracarbon: two commands do all set-up on a fresh machine.
#   make run   create .venv, install, run the default synthetic study
#   make test  same environment, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PARAMS ?= params/default.yaml
export PYTHONHASHSEED := 0

.PHONY: install run quick test test-fast explore bench clean-runs lab

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in requirements.txt (the CPU wheel; never an unpinned torch)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python run_all.py --params $(PARAMS)

quick: $(STAMP)
	$(BIN)/python run_all.py --params params/quick.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lab: $(STAMP)
	$(BIN)/python -m jupyter lab notebooks/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-runs:
	rm -rf runs/
