# Developer shortcuts. README's two commands are the set-up from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv run test test-sigill test-fast typecheck check lint imports bench bench-tui
venv:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -e '.[test]'

run:
	$(VENV)/bin/localllm

test:
	$(PY) -m pytest -q

# The whole suite as on an Intel AMX host whose AMX kernel dies of SIGILL (tests/sigill_sim): every
# llama.cpp process, this pytest process included, dies at its first decode with extra buffers on.
test-sigill:
	LOCALLLM_TEST_SIGILL=1 PYTHONPATH=$(CURDIR)/tests/sigill_sim $(PY) -m pytest -q -p no:cacheprovider

# The quick tier (under 2 minutes): no model worker (but the scripted backend's, which loads none), no venv
# build, no wheel build; mypy first.
test-fast: typecheck
	$(PY) -m pytest -q -m "not slow and not wheel" -p no:cacheprovider -n auto

# mypy, strict on config, models, runtime, machine and chat ([tool.mypy] in pyproject.toml)
typecheck:
	$(VENV)/bin/mypy

lint:
	$(VENV)/bin/ruff check localllm tests benchmarks

imports:
	$(VENV)/bin/lint-imports

check: lint imports typecheck test

bench:
	$(PY) benchmarks/decode_ratio.py --mode session

bench-tui:
	$(PY) benchmarks/decode_ratio.py --mode tui
