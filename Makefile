# scaocc: `make demo` and `make test` are the two commands; both set up .venv if missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup test lint typecheck pytest demo clean

# Creates .venv with torch==2.13.0 (CPU wheel) unless a torch is already importable in it
# (on a CUDA machine the user's own torch is kept), then the rest of requirements.txt.
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: requirements.txt setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

lint: setup
	$(VENV)/bin/ruff check scaocc_core scaocc_ros tests bench launch

typecheck: setup
	$(VENV)/bin/mypy scaocc_core

pytest: setup
	$(VENV)/bin/pytest

test: lint typecheck pytest

clean:
	rm -rf build install log demo_out
