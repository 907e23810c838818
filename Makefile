# samaug: every variable can be overridden, e.g. `make priors DATASET=monuseg WORKERS=4`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; on a CUDA machine e.g.
#   TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

DATASET ?= glas
DATA_ROOT ?= data
STORE_DIR ?= stores
STORE ?= $(STORE_DIR)/$(DATASET).zarr
WEIGHTS_DIR ?= checkpoints
# The paper's SAM is ViT-H (the released SAMAug_barebone.py); for ViT-B:
#   make weights SAM_MODELS=vit_b && make priors SAM_CHECKPOINT=checkpoints/sam_vit_b_01ec64.pth
SAM_CHECKPOINT ?= $(WEIGHTS_DIR)/sam_vit_h_4b8939.pth
SAM_MODELS ?= vit_h
# ImageNet backbones `make weights` fetches too (swin_t: Swin-UNet's Swin-T; pvt_v2_b2: HSNet's
# PVTv2-B2); empty for none.
BACKBONE_WEIGHTS ?= swin_t
MASKER ?= sam
WORKERS ?=
DEVICE ?= auto
PRIORS_ARGS ?=
MODEL ?= unet
# The weights a model starts from (train, reproduce): empty for the ImageNet file its paper
# starts from, in WEIGHTS_DIR (swin_unet, pranet, hsnet); a path; or none (random weights).
PRETRAINED ?=
MODE ?= joint
# Empty: the protocol's recipe (100 epochs for patches, 39 for polyp stores).
EPOCHS ?=
SEED ?= 0
RUN ?= runs/$(DATASET)/$(MODEL)-$(MODE)-$(SEED)
TRAIN_ARGS ?=
EVAL_ARGS ?=
# `make reproduce TABLE=monuseg`: the paper's table from stores/monuseg.zarr.
TABLE ?= monuseg
SEEDS ?= 3
REPRODUCE_STORE ?= $(STORE_DIR)/$(TABLE).zarr
REPRODUCE_DIR ?= reproduce/$(TABLE)
REPRODUCE_ARGS ?=
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (each test file runs whole on one worker).
TEST_WORKERS ?= 2
# The real data subsets used by some tests and benchmarks (skipped where absent).
SHARED_DATA ?= $(abspath ../shared/data)
export SAMAUG_SHARED_DATA := $(SHARED_DATA)

.PHONY: setup test priors weights train eval reproduce demo bench convergence lint clean-venv

# setup installs what samaug needs to run; the test tooling (pytest, moto's S3 server, ...)
# is installed by `make test` itself, the first time.
setup: $(VENV)/.installed

# SAM 2 (the sam2 masker) ships as an sdist whose build imports torch: it is built against
# the torch installed first (an isolated build would download another), without its optional
# CUDA extension (video post-processing only).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_SPEC)
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install --no-build-isolation "sam2>=1.1"
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

priors: setup
	$(BIN)/samaug priors $(DATASET) --data-root $(DATA_ROOT)/$(DATASET) --store $(STORE) \
		--masker $(MASKER) --checkpoint $(SAM_CHECKPOINT) --device $(DEVICE) \
		$(if $(WORKERS),--workers $(WORKERS)) $(PRIORS_ARGS)

weights: setup
	$(BIN)/samaug weights $(SAM_MODELS) $(BACKBONE_WEIGHTS) --dir $(WEIGHTS_DIR)

train: setup
	$(BIN)/samaug train --store $(STORE) --model $(MODEL) --mode $(MODE) \
		$(if $(EPOCHS),--epochs $(EPOCHS)) --seed $(SEED) --device $(DEVICE) --out $(RUN) \
		--weights-dir $(WEIGHTS_DIR) $(if $(PRETRAINED),--pretrained $(PRETRAINED)) $(TRAIN_ARGS)

eval: setup
	$(BIN)/samaug eval $(RUN) --device $(DEVICE) $(EVAL_ARGS)

reproduce: setup
	$(BIN)/samaug reproduce $(TABLE) --store $(REPRODUCE_STORE) --out $(REPRODUCE_DIR) \
		--seeds $(SEEDS) --device $(DEVICE) --weights-dir $(WEIGHTS_DIR) \
		$(if $(PRETRAINED),--pretrained $(PRETRAINED)) \
		$(if $(EPOCHS),--epochs $(EPOCHS)) $(REPRODUCE_ARGS)

demo: setup
	$(BIN)/samaug demo --out $(DEMO_DIR)

# `make bench DEVICE=cuda`: the GPU benchmark (samaug/bench/gpu_bench.py) instead.
bench: setup
	$(BIN)/python -m samaug.bench $(if $(filter cuda%,$(DEVICE)),--device cuda)

# Does the default recipe converge? The default MoNuSeg U-Net run on the data subset, on CPU.
CONVERGENCE_MINUTES ?= 45
CONVERGENCE_DIR ?= convergence
convergence: setup
	$(BIN)/python -m samaug.bench.convergence_bench --minutes $(CONVERGENCE_MINUTES) \
		--out $(CONVERGENCE_DIR)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check precompute train samaug tests
	$(BIN)/ruff format --check precompute train samaug tests

clean-venv:
	rm -rf $(VENV)
