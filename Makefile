# Two set-up commands on a fresh machine: `make demo` and `make test`; both build .venv first.
PY_VERSION ?= 3.12.1
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo explain test test-slow test-all lint format bench clean

# The exact versions of requirements.lock first (same seed, same numbers also depends on
# library versions), then the package itself.
$(STAMP): pyproject.toml requirements.lock
	PYENV_VERSION=$(PY_VERSION) python3.12 -m venv $(VENV) || python3.12 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fishschool compare owners streamer --out results/demo --force

# Why owners and the streamer differ, by mechanism (the README's waterfall; a few minutes).
explain: $(STAMP)
	$(VENV)/bin/fishschool explain hybrid --channels owners streamer --consumers 20000 \
		--replicates 4 --out results/explain --force

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

# The longer statistical checks, notebooks and the browser test (CI runs test and test-slow).
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check sim analysis tests benchmarks
	$(VENV)/bin/ruff format --check sim analysis tests benchmarks
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix sim analysis tests benchmarks
	$(VENV)/bin/ruff format sim analysis tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) results/*
