# Two entry points do all the set-up on a fresh machine:
#   make demo   installs the course and grades the bundled demo class
#   make test   installs the course with its test tools and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# apt-get needs root; use sudo when we are not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install install-test system-deps system-deps-test

demo: install
	$(BIN)/autograd-course demo

test: install-test
	$(BIN)/python -m pytest

install: system-deps $(BIN)/autograd-course

install-test: install system-deps-test
	$(BIN)/pip install --quiet -e '.[test]'

$(BIN)/autograd-course: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# bubblewrap is the grader's sandbox; Debian's python3 needs python3-venv to make the environment.
system-deps:
	@command -v bwrap >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }

# Debian's Chromium for the browser test (Playwright cannot download its own browser here).
system-deps-test:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
