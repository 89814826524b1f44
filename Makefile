# Two commands: `make up` runs the platform on its embedded default, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# `make up` installs what running needs; `make test` / `make install` add the test toolchain.
RUNTIME := $(VENV)/.installed-runtime

$(RUNTIME): pyproject.toml | $(BIN)/python
	@echo "make up: installing the runtime dependencies into $(VENV) (first run only: a few minutes)"
	@start=$$(date +%s); $(BIN)/python -m pip install --quiet -e . && \
	  echo "make up: installed in $$(( $$(date +%s) - start )) s"
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP) $(RUNTIME)

install: $(STAMP)

up: $(RUNTIME)
	$(BIN)/agency up

lint: $(STAMP)
	$(BIN)/ruff check .

# pytest-xdist: two worker processes, each with its own session services (Prefect server, Vault,
# workers...); the tests mostly wait on real servers, so two overlap well even on 2 cores.
# Tests marked xdist_group("heavy") run on one worker, one after another.
# `make test PYTEST_XDIST=` runs serially.
PYTEST_XDIST ?= -n 2 --dist loadgroup

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
