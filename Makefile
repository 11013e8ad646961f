# Both entry points build the virtualenv themselves: a fresh clone needs only python3.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STACK  ?= dev

.PHONY: plan test lint typecheck unit clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

## plan: what `pulumi up` would declare for STACK (default dev), offline
plan: $(VENV)/.installed
	$(PYTHON) -m infra.synth $(STACK)

## test: lint, type-check and the whole test suite (what CI runs)
test: lint typecheck unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy infra __main__.py

unit: $(VENV)/.installed
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
