# Developer and CI entry points. Everything runs from the project's own virtualenv, which the
# first target that needs it creates (python3 -m venv) and fills (pip install -e) from scratch.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,dev,docs,flask,postgres,mysql
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# Extra arguments for pytest, e.g. make test PYTEST_ARGS='-k maindom -x'
PYTEST_ARGS ?=
# pytest-xdist workers: auto (tests/conftest.py: two per core, at most 8; none when
# PYTEST_ARGS names single tests), a number, or 0 for one process.
PYTEST_WORKERS ?= auto
# DATABASES=0 skips starting PostgreSQL/MariaDB (their tests then skip, or fail under CI=true).
DATABASES ?= 1
# BROWSER=0 skips installing Chromium for the dashboard's browser tests (they then skip, or fail
# under CI=true).
BROWSER ?= 1
SITE_DIR := /tmp/recurjobs-site

.PHONY: help install demo test lint docs bench clean distclean

help:
	@echo 'make install    create $(VENV) and install recurjobs in it (editable, all test/dev extras)'
	@echo 'make demo       run `python -m recurjobs demo`'
	@echo 'make test       start the test databases, run pytest, ruff, mypy and the docs build'
	@echo 'make lint       ruff and mypy only'
	@echo 'make docs       build the docs strictly into $(SITE_DIR)'
	@echo 'make bench      install the bench extra and run benchmarks/run_all.py (BENCH_ARGS=--quick: smoke run)'
	@echo 'make clean      remove build and cache files; distclean also removes $(VENV)'

# The stamp is rebuilt whenever the packaging metadata changes. The venv's own pip does the
# install, so nothing lands in the system Python.
$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $@

# APScheduler 4.0.0a6 (the distributed peer) comes with the bench extra; APScheduler 3 (the
# recurring peer) cannot share the venv with it, so it goes to a folder of its own that the
# benchmarks put on the path of the processes that measure it (benchmarks/_common.py).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[$(EXTRAS),bench]'
	$(BIN)/python -m pip install --no-deps --upgrade --target $(VENV)/apscheduler3 'apscheduler>=3.11,<4'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m recurjobs demo

# The database script prints `export ...` lines (diagnostics go to stderr); assigning them
# first makes a failure of the script stop the recipe, which `eval "$(...)"` alone would not.
# Ruff, mypy and the docs build run beside pytest (whose tests mostly wait on other processes
# and servers), niced so that timing-sensitive tests keep the CPU; their output is shown after
# pytest's, and any failure fails the target. The docs go to a directory of this run's own, so
# parallel checkouts do not share one.
test: $(STAMP)
	checks_log="$$(mktemp)"; site="$$(mktemp -d)"; \
	trap 'rm -rf "$$checks_log" "$$site"' EXIT; \
	{ \
		status=0; \
		nice -n 10 $(BIN)/ruff check . || status=1; \
		nice -n 10 $(BIN)/mypy || status=1; \
		if [[ -f mkdocs.yml ]]; then nice -n 10 $(BIN)/mkdocs build --strict -q -d "$$site" || status=1; fi; \
		exit "$$status"; \
	} >"$$checks_log" 2>&1 & checks=$$!; \
	if [[ "$(DATABASES)" != 0 ]]; then \
		urls="$$(bash scripts/test-databases.sh)" || { kill "$$checks" 2>/dev/null; exit 1; }; \
		eval "$$urls"; \
	fi; \
	if [[ "$(BROWSER)" != 0 ]]; then \
		bash scripts/test-browser.sh || { kill "$$checks" 2>/dev/null; exit 1; }; \
	fi; \
	pytest_status=0; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || pytest_status=$$?; \
	checks_status=0; wait "$$checks" || checks_status=$$?; \
	echo '--- ruff, mypy, mkdocs build:'; cat "$$checks_log"; \
	if [[ $$checks_status != 0 ]]; then echo "ruff, mypy or the docs build failed"; fi; \
	[[ $$pytest_status == 0 && $$checks_status == 0 ]]

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict -d $(SITE_DIR)

# Extra arguments for run_all.py, e.g. make bench BENCH_ARGS=--quick (a smoke run)
BENCH_ARGS ?=
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build dist .eggs ./*.egg-info .pytest_cache .mypy_cache .ruff_cache $(SITE_DIR)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
