# Two commands do all the set-up on a fresh machine (no GPU, no network beyond the package index):
#   make demo   creates .venv, installs the package and runs the smoke grid end to end with its report,
#               on the TinyStories sample shipped in data/tinystories (no download)
#   make test   creates .venv, installs the package with its test extras and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint test-slow bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,torch]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m experiments.reproduce experiment=smoke

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -n auto --dist loadfile --durations=30  # one worker per core, a file's tests on one worker (module fixtures); the slowest 30 listed

test-slow: $(VENV)/.installed
	JAX_DISABLE_MOST_OPTIMIZATIONS=0 $(PY) -m pytest -m slow  # fully optimised XLA (the default suite compiles without: tests/conftest.py)

bench: $(VENV)/.installed
	$(PY) -m benchmarks.run
