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

.PHONY: demo test install install-dev results variants case-studies cards clean

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
# Seed 0 is the bundled checkpoint; retrain it with `zoo train ID` and copy config.json and
# model.safetensors from runs/ID/seed-0 to checkpoints/ID to replace it.
SEEDS ?= 1 2
IDS := erm-coloured-digits realpatch-coloured-digits erm-coloured-digits-domains okapi-coloured-digits \
	erm-coloured-digits-missing-source supmatch-coloured-digits dad3dnet-synthheads facebehaviornet-synthheads \
	mtl-dm-digits mtl-dm-synthheads head2head-synthheads head2headfs-synthheads headgan-synthheads free-headgan-synthheads
results: install
	for id in $(IDS); do \
	  for seed in $(SEEDS); do $(BIN)/zoo train $$id --seed $$seed || exit 1; done; \
	  $(BIN)/zoo eval $$id --seed 0 $(foreach s,$(SEEDS),--seed $(s)) > /dev/null || exit 1; \
	done
	$(MAKE) variants cards

# Ablations and extra baselines shown in the cards: every seed is trained into runs/VARIANT.
VARIANT_SEEDS ?= 0 1 2
# HeadGAN's changes from the released code, undone one at a time (the card's table).
HEADGAN := --config training/configs/headgan-synthheads.yaml
NO_THRESHOLD := --set training.threshold_search=null
# Trained on NMFCs of DAD-3DNet fits of the frames instead of the true motion.
FITTED := --set model.fitter_id=dad3dnet-synthheads
RELEASED := $(NO_THRESHOLD) --set training.ema=null --set model.residual=false --set training.weights.image=1 \
	--set training.weights.mouth=1
variants: install
	for seed in $(VARIANT_SEEDS); do \
	  $(BIN)/python training/train_realpatch.py --config training/configs/realpatch-coloured-digits-no-matching.yaml --seed $$seed || exit 1; \
	  $(BIN)/python training/train_okapi.py --config training/configs/fixmatch-coloured-digits-domains.yaml --seed $$seed || exit 1; \
	  for labeller in kmeans none; do \
	    $(BIN)/python training/train_supmatch.py --config training/configs/supmatch-coloured-digits.yaml --labeller $$labeller \
	      --seed $$seed --output-dir runs/supmatch-coloured-digits-$$labeller/seed-$$seed || exit 1; \
	  done; \
	  $(BIN)/python training/train_dad3dnet.py --config training/configs/dad3dnet-synthheads.yaml --set model.heatmap_gate=false \
	    --seed $$seed || exit 1; \
	  $(BIN)/python training/train_headgan.py $(HEADGAN) --set model.audio_dim=0 --seed $$seed || exit 1; \
	done
	$(BIN)/python training/train_head2head.py --config training/configs/head2head-synthheads.yaml --set training.dynamics=null
	$(BIN)/zoo eval head2head-synthheads --run-name head2head-synthheads-no-dynamics > /dev/null
	$(BIN)/zoo eval headgan-synthheads --run-name headgan-synthheads-no-audio $(foreach s,$(VARIANT_SEEDS),--seed $(s)) > /dev/null
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(NO_THRESHOLD) --output-dir runs/headgan-synthheads-no-threshold/seed-0
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(NO_THRESHOLD) --set model.audio_dim=0 \
	  --output-dir runs/headgan-synthheads-no-threshold-no-audio/seed-0
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(FITTED) --output-dir runs/headgan-synthheads-fitted/seed-0
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(FITTED) --set model.audio_dim=0 \
	  --output-dir runs/headgan-synthheads-fitted-no-audio/seed-0
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(NO_THRESHOLD) --set training.ema=null \
	  --output-dir runs/headgan-synthheads-no-average/seed-0
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(RELEASED) --output-dir runs/headgan-synthheads-released/seed-0
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(RELEASED) --set model.blend=true
	$(BIN)/python training/train_headgan.py $(HEADGAN) $(NO_THRESHOLD) --set model.correction_threshold=0.05 \
	  --set training.threshold_ramp_epochs=[1,3] --output-dir runs/headgan-synthheads-trained-threshold/seed-0
	for run in no-threshold no-threshold-no-audio no-average released blend trained-threshold fitted fitted-no-audio; do \
	  $(BIN)/zoo eval headgan-synthheads --run-name headgan-synthheads-$$run > /dev/null || exit 1; \
	done
	$(BIN)/zoo eval dad3dnet-synthheads --run-name dad3dnet-synthheads-no-gate $(foreach s,$(VARIANT_SEEDS),--seed $(s)) > /dev/null
	$(BIN)/zoo eval realpatch-coloured-digits --run-name realpatch-coloured-digits-no-matching $(foreach s,$(VARIANT_SEEDS),--seed $(s)) > /dev/null
	$(BIN)/zoo eval okapi-coloured-digits --run-name fixmatch-coloured-digits-domains $(foreach s,$(VARIANT_SEEDS),--seed $(s)) > /dev/null
	for labeller in kmeans none; do \
	  $(BIN)/zoo eval supmatch-coloured-digits --run-name supmatch-coloured-digits-$$labeller $(foreach s,$(VARIANT_SEEDS),--seed $(s)) > /dev/null || exit 1; \
	done

# The multi-task tables of the face-analysis cards: every variant for 3 seeds, and the zero-shot
# compound expressions of the bundled FaceBehaviorNet.
case-studies: install
	$(BIN)/python training/mtl_case_study.py --config training/configs/mtl-dm-digits.yaml --seeds 0 1 2
	$(BIN)/python training/mtl_case_study.py --config training/configs/mtl-dm-digits-rich-attributes.yaml --seeds 0 1 2
	$(BIN)/python training/mtl_case_study.py --config training/configs/mtl-dm-synthheads.yaml --seeds 0 1 2
	$(BIN)/python training/facebehaviornet_case_study.py --config training/configs/facebehaviornet-synthheads.yaml --seeds 0 1 2
	$(BIN)/python training/facebehaviornet_compounds.py --model facebehaviornet-synthheads

cards: install
	for id in $(IDS); do $(BIN)/zoo card $$id || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
