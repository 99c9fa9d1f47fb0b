# The README's two commands. Each does all set-up first (venv, packages, sample heads).
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: setup demo test test-slow benchmark
setup:
	bash scripts/setup.sh

# Main job: the whole pipeline on a real sample head (QC picture in outputs/demo/)
demo: setup
	$(VENV)/bin/brainage demo --out outputs/demo $(ARGS)

# Test suite (CPU, no network, no GPU); slow cases are run with `make test-slow`
test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider Testing

test-slow: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider -m slow Testing

benchmark: setup
	$(PYTHON) benchmarks/inference.py
