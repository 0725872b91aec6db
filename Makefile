# Two commands on a fresh machine: `make study ...` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

MODEL ?= cgan
DATASET ?= mnist
TRIALS ?= 100
STORAGE ?= sqlite:///storage/genopt.db
STUDY ?= $(MODEL)-$(DATASET)
SPEC ?= studies/$(MODEL).toml
# Empty means "as the spec says".
EPOCHS ?=
SEED ?=
# Anything else for `genopt study`, e.g. ARGS="--enqueue lr=2e-4,batch_size=64,noise_dim=100".
ARGS ?=

STUDY_ARGS := --model $(MODEL) --dataset $(DATASET) --trials $(TRIALS) --storage $(STORAGE) \
	--study $(STUDY) --spec $(SPEC) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SEED),--seed $(SEED)) $(ARGS)

.PHONY: study test lint format venv clean-venv

$(BIN)/genopt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/genopt

study: $(BIN)/genopt
	$(BIN)/genopt study $(STUDY_ARGS)

lint: $(BIN)/genopt
	$(BIN)/ruff check genopt tests
	$(BIN)/ruff format --check genopt tests

format: $(BIN)/genopt
	$(BIN)/ruff format genopt tests
	$(BIN)/ruff check --fix genopt tests

test: lint
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
