# Developer shortcuts. README's two commands are the set-up from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv run test check lint imports bench bench-tui
venv:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -e '.[test]'

run:
	$(VENV)/bin/localllm

test:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check localllm tests benchmarks

imports:
	$(VENV)/bin/lint-imports

check: lint imports test

bench:
	$(PY) benchmarks/decode_ratio.py --mode session

bench-tui:
	$(PY) benchmarks/decode_ratio.py --mode tui
