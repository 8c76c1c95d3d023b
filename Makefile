# One entry point for people and CI. Each target creates the virtual environment it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv up test test-quick bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

up: venv  ## start localkube, the operator and the Elasticsearch-compatible API
	$(VENV)/bin/tmd up

test: venv  ## the whole test suite
	$(PY) -m pytest

test-quick: venv  ## everything but the slow end-to-end tests
	$(PY) -m pytest -m "not slow"

bench: venv
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
