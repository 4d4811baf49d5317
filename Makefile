# Two entry points do all the set-up on a fresh machine:
#   make demo   installs the course and grades the bundled demo class
#   make test   installs the course with its test tools, lints it (make lint) and runs the test suite
PYTHON ?= python3
VENV ?= .venv
# PyTorch's own index of CPU wheels. The default index (PyPI) serves a CUDA build of several GB on Linux. When
# this index cannot be reached, torch comes from the default index; set TORCH_INDEX= (empty) to skip it, or point
# it at a mirror.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# The torch requirement, as pinned in pyproject.toml (the one place it is written).
TORCH_PIN := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
BIN := $(VENV)/bin
# apt-get needs root; use sudo when we are not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint install install-test system-deps system-deps-test

demo: install
	$(BIN)/autograd-course demo

test: install-test lint
	$(BIN)/python -m pytest

# ruff and mypy, configured in pyproject.toml ([tool.ruff], [tool.mypy]); `make test` runs this first.
lint: install-test
	$(BIN)/ruff check autograd_course tests benchmarks grader_config.py nbgrader_config.py
	$(BIN)/mypy

# The unit layer alone: seconds, no grader run, no browser.
test-fast: install-test
	$(BIN)/python -m pytest -m "not slow"

install: system-deps $(BIN)/autograd-course

install-test: install system-deps-test
	$(BIN)/pip install --quiet -e '.[test]'

$(BIN)/autograd-course: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$(TORCH_INDEX)/torch/" 2>/dev/null; then \
		echo "$(TORCH_PIN) (CPU build) from $(TORCH_INDEX)"; \
		$(BIN)/pip install --quiet --index-url "$(TORCH_INDEX)" "$(TORCH_PIN)"; \
	else \
		echo "$(TORCH_PIN) from the default index ($(or $(TORCH_INDEX),TORCH_INDEX is empty) cannot be reached)"; \
	fi
	$(BIN)/pip install --quiet -e .
	touch $@

# bubblewrap is the grader's sandbox; Debian's python3 needs python3-venv to make the environment.
system-deps:
	@command -v bwrap >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }

# Debian's Chromium for the browser test (Playwright cannot download its own browser here), and Debian's PostgreSQL
# server for the gradebook tests (tests/postgres_helpers.py runs its initdb and pg_ctl; no service is started).
system-deps-test:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql; }
