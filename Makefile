# Two commands set everything up on a fresh machine: `make demo` and `make test`.
#   make demo   installs what the service needs (whisp with the bundled tiny.en model)
#   make test   adds the test, lint and reference-engine (PyTorch) extras
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUM    := $(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO   := $(VENV)/.demo-$(SUM)
DEV    := $(VENV)/.dev-$(SUM)
# PyTorch's CPU build, for the reference engine the tests compare against (any other torch
# spec downloads gigabytes of CUDA). It lies on disk here, where pip's find-links has it;
# elsewhere: make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install test lint demo bench lock tools clean

install: $(DEV)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[models]'
	rm -f $(VENV)/.demo-*
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[models,test,openai,lint]'
	rm -f $(VENV)/.dev-* $(VENV)/.demo-*
	touch $@ $(DEMO)

# systemd-analyze checks infra/whisp.service in the tests; Debian's systemd package has it
# (installing it starts nothing). Best effort: without it those tests skip and say why.
tools:
	@command -v systemd-analyze > /dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null \
	  && apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd > /dev/null; } || true

test: $(DEV) tools
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(DEMO)
	$(BIN)/whisp demo

bench: $(DEV)
	$(BIN)/python -m pip install -q imageio-ffmpeg
	$(BIN)/python bench/run.py all

# infra/requirements.lock: every package `.[models]` resolves to now, for the container
# and the systemd install (pip install -c infra/requirements.lock '.[models]').
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install -q '.[models]'
	{ echo "# pip freeze of '.[models]' (Linux x86_64, CPython 3.11): make lock"; \
	  $(VENV)-lock/bin/python -m pip freeze --exclude-editable | grep -vi '^whisp'; \
	} > infra/requirements.lock
	rm -rf $(VENV)-lock

clean:
	rm -rf $(VENV) $(VENV)-lock demo .mypy_cache .ruff_cache .pytest_cache
