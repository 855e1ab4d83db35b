# Two commands on a fresh machine (see README.md):
#   make demo   set up .venv and run the default suite on the built-in phantom, writing its leaderboard
#   make test   set up .venv (with test extras) and run the tests, except those marked slow
# and, for CI (.ci/run runs both):
#   make test-slow   the slow end-to-end tests only (minutes: real trainings, fresh interpreters, pip)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: demo test test-slow setup setup-test clean-results reliability-doc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e .

setup-test: $(BIN)/python
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e '.[test]'
	@# The site tests drive a real headless Chromium (Debian's package; never a downloaded browser).
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null 2>&1 \
	  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) \
	  || echo "note: chromium could not be installed; the browser tests will skip and say so"

demo: setup
	$(BIN)/robustbench-us run default

# pyproject's addopts leave out the tests marked slow; a later -m replaces that selection.
test: setup-test
	$(BIN)/python -m pytest

test-slow: setup-test
	$(BIN)/python -m pytest -m slow

clean-results:
	rm -rf results

# docs/reliability.md is written by the tests that inject the faults and bad inputs (counts from that run),
# the slow ones included.
# Every test file that reports a row, so a new row cannot be left out of the page.
RELIABILITY_TESTS := $(shell grep -l 'reliability\.row' tests/test_*.py)
reliability-doc: setup-test
	$(BIN)/python -m pytest -q -m "slow or not slow" $(RELIABILITY_TESTS) --reliability-doc docs/reliability.md
