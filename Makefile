# terracarbon: two commands do all set-up on a fresh machine.
#   make run   create .venv, install, run the default synthetic study
#   make test  same environment, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PARAMS ?= params/default.yaml
RUN    ?= runs/quick
PORT   ?= 5006
export PYTHONHASHSEED := 0

.PHONY: install run quick test test-fast explore bench clean-runs lab browser

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in requirements.txt (the CPU wheel; never an unpinned torch)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python run_all.py --params $(PARAMS)

quick: $(STAMP)
	$(BIN)/python run_all.py --params params/quick.yaml

# Debian's chromium for the browser tests (playwright drives it; no browser download)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

# two pytest-xdist workers (the standard machine's two cores), a test file per worker at a
# time (module fixtures are built once); the quick study is run once for both
# (tests/conftest.py); the 25 slowest tests are listed at the end (the suite's time budget)
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

explore: $(STAMP)
	$(BIN)/python -m terracarbon.viz.app $(RUN) --port $(PORT)

# JupyterLab on this machine only (127.0.0.1, token login), without the news feed and the
# update check, a read-only extension manager, and Panel's stylesheets from the server
# (no request leaves the machine; terracarbon.viz.lab); tested by tests/test_lab.py
lab: $(STAMP)
	$(BIN)/python -m terracarbon.viz.lab

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-runs:
	rm -rf runs/
