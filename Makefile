# Set-up and entry points. `make demo` and `make test` create .venv and install it from the lock when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The lock: pylock.toml (PEP 751) pins every package with its hash, torch's CPU build included.
# On a CUDA machine: `make test TORCH=cuda` (or `make demo TORCH=cuda`) installs pylock.cuda.toml instead.
TORCH ?= cpu
LOCK := $(if $(filter cuda,$(TORCH)),pylock.cuda.toml,pylock.toml)
STAMP := $(VENV)/.installed-$(TORCH)

.PHONY: demo test lint docs bench lock upgrade-check bounds-check device-pack clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python $(LOCK) pyproject.toml tools/pip.txt
	$(BIN)/python -m pip install --require-hashes -r tools/pip.txt
	$(BIN)/python -m pip install -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/embedtune demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

# The documentation site (docs/, mkdocs.yml) into site/; warnings are errors. The test suite builds it too.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python bench/scifact.py

# Re-resolve pylock.toml and pylock.cuda.toml from pyproject.toml's bounds and tools/lock-constraints.txt.
lock: $(STAMP)
	$(BIN)/python tools/lock.py

# Newest versions the bounds allow, in a throwaway environment: runs the fast tests, prints what broke (not CI).
upgrade-check: $(STAMP)
	$(BIN)/python tools/upgrade_check.py --newest

# The lower bounds of pyproject.toml's direct dependencies, in a throwaway environment, the same way (not CI).
bounds-check: $(STAMP)
	$(BIN)/python tools/upgrade_check.py --lowest

# What a lent GPU call carries (.device-pack/, docs/development.md "On a lent GPU"); then tools/gpu_check.sh there.
device-pack: $(STAMP)
	$(BIN)/python tools/device_pack.py --korquad

clean-venv:
	rm -rf $(VENV)
