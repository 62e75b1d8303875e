# `make demo` and `make test` do all set-up themselves: a virtual environment in .venv, the
# CPU build of torch, and the package with its extras. Run them from a fresh clone.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch. On machines whose default index serves CUDA builds, pass e.g.
#   make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test install install-dev results cards clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e ".[spaces]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e ".[dev,spaces]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 $(BIN)/zoo demo

test: install-dev
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/python -m pytest $(PYTEST_ARGS)

# Retrain the two extra seeds of every bundled checkpoint, evaluate all seeds and re-render the cards.
SEEDS ?= 1 2
results: install
	for id in erm-coloured-digits realpatch-coloured-digits; do \
	  for seed in $(SEEDS); do $(BIN)/zoo train $$id --seed $$seed || exit 1; done; \
	  $(BIN)/zoo eval $$id --seed 0 $(foreach s,$(SEEDS),--seed $(s)) > /dev/null || exit 1; \
	done
	$(MAKE) cards

cards: install
	for id in erm-coloured-digits realpatch-coloured-digits; do $(BIN)/zoo card $$id || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
