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
SAM_CHECKPOINT ?= checkpoints/sam_vit_b_01ec64.pth
SAM_MODELS ?= vit_b vit_l vit_h
MASKER ?= sam
WORKERS ?=
DEVICE ?= auto
PRIORS_ARGS ?=
MODEL ?= unet
MODE ?= samaug
EPOCHS ?= 100
SEED ?= 0
RUN ?= runs/$(DATASET)/$(MODEL)-$(MODE)-$(SEED)
TRAIN_ARGS ?=
EVAL_ARGS ?=
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=
# The real data subsets used by some tests and benchmarks (skipped where absent).
SHARED_DATA ?= $(abspath ../shared/data)
export SAMAUG_SHARED_DATA := $(SHARED_DATA)

.PHONY: setup test priors weights train eval demo bench lint clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

priors: setup
	$(BIN)/samaug priors $(DATASET) --data-root $(DATA_ROOT)/$(DATASET) --store $(STORE) \
		--masker $(MASKER) --checkpoint $(SAM_CHECKPOINT) --device $(DEVICE) \
		$(if $(WORKERS),--workers $(WORKERS)) $(PRIORS_ARGS)

weights: setup
	$(BIN)/samaug weights $(SAM_MODELS) --dir $(dir $(SAM_CHECKPOINT))

train: setup
	$(BIN)/samaug train --store $(STORE) --model $(MODEL) --mode $(MODE) --epochs $(EPOCHS) \
		--seed $(SEED) --device $(DEVICE) --out $(RUN) $(TRAIN_ARGS)

eval: setup
	$(BIN)/samaug eval $(RUN) --device $(DEVICE) $(EVAL_ARGS)

demo: setup
	$(BIN)/samaug demo --out $(DEMO_DIR)

bench: setup
	$(BIN)/python -m samaug.bench

lint: setup
	$(BIN)/ruff check precompute train samaug tests
	$(BIN)/ruff format --check precompute train samaug tests

clean-venv:
	rm -rf $(VENV)
