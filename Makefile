# Two commands on a fresh machine: `make study ...` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

MODEL ?= cgan
DATASET ?= mnist
TRIALS ?= 100
STORAGE ?= sqlite:///storage/genopt.db
# Your own data instead of DATASET: a folder of images (one subfolder per class, or none; docs/images.md)
# or of IDX files; IMAGE_SIZE (a multiple of 4) is the square size images are read at (empty: 64 when
# they are at least that, else 32).
DATA_DIR ?=
IMAGE_SIZE ?=
STUDY ?= $(MODEL)-$(if $(DATA_DIR),$(notdir $(abspath $(DATA_DIR))),$(DATASET))
SPEC ?= studies/$(MODEL).toml
# Empty means "as the spec says".
EPOCHS ?=
SEED ?=
# Where trials keep checkpoints, grids and histories: empty is storage/artifacts; a folder, or
# s3://BUCKET/PREFIX with AWS_ENDPOINT_URL and the credentials in the environment (docs/distributed.md).
ARTIFACT_STORE ?=
# A wall-clock budget: 90s, 30m, 2h or 1h30m (empty: none). No trial starts after it, and the running
# trial stops there keeping its best epoch so far; with TRIALS, whichever comes first ends the study.
BUDGET ?=
# Worker processes on this machine sharing TRIALS (each gets its share of the CPU threads).
WORKERS ?= 1
# Local workers placed on each GPU in turn, the rest on the CPU; empty: they share every GPU round-robin.
WORKERS_PER_GPU ?=
# `make dashboard`: the port optuna-dashboard listens on (127.0.0.1 only).
PORT ?= 8080
# `make export`: candidates for the ensemble (the best TOP_K trials) and how to combine them.
TOP_K ?= 5
MODE ?= auto
# Anything else for `genopt study`, e.g. ARGS="--enqueue lr=1.5e-3,batch_size=48,noise_dim=100".
ARGS ?=

STUDY_ARGS := --model $(MODEL) $(if $(DATA_DIR),--data-dir $(DATA_DIR),--dataset $(DATASET)) \
	$(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE)) --trials $(TRIALS) --storage $(STORAGE) \
	--study $(STUDY) --spec $(SPEC) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SEED),--seed $(SEED)) \
	$(if $(BUDGET),--timeout $(BUDGET)) \
	--workers $(WORKERS) $(if $(WORKERS_PER_GPU),--workers-per-gpu $(WORKERS_PER_GPU)) \
	$(if $(ARTIFACT_STORE),--artifact-store $(ARTIFACT_STORE)) $(ARGS)

.PHONY: study export dashboard test test-fast lint format venv clean-venv bench soak

$(BIN)/genopt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,postgres,s3,grpc]'
	touch $@

venv: $(BIN)/genopt

study: $(BIN)/genopt
	$(BIN)/genopt study $(STUDY_ARGS)

dashboard: $(BIN)/genopt
	$(BIN)/genopt dashboard --storage $(STORAGE) --port $(PORT) $(if $(ARTIFACT_STORE),--artifact-store $(ARTIFACT_STORE))

# Writes storage/exports/$(STUDY).pt, .json and .pt2 (the study's best generators as one sampler).
export: $(BIN)/genopt
	$(BIN)/genopt ensemble --study $(STUDY) --storage $(STORAGE) --top-k $(TOP_K) --mode $(MODE) --torch-export

lint: $(BIN)/genopt
	$(BIN)/ruff check genopt tests bench
	$(BIN)/ruff format --check genopt tests bench

format: $(BIN)/genopt
	$(BIN)/ruff format genopt tests bench
	$(BIN)/ruff check --fix genopt tests bench

# Every test, spread over the cores by pytest-xdist (each worker gets its share of torch's threads);
# `make test-fast` leaves out those marked slow (studies, trials and console-script subprocesses),
# for the edit loop.
test: lint
	$(BIN)/python -m pytest -n auto --durations=15

test-fast: $(BIN)/genopt
	$(BIN)/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)

# `make bench`: the benchmark of the question still open (bench/search_efficiency.py;
# bench/harness.py runs it), run as modules of the bench package
# (`python -m bench.NAME`); each rewrites its own section of docs/benchmarks.md (between its
# markers) and its plot. The settled studies' tables stay as they are.
# BENCH_ARGS="--quick": under 3 minutes each on 2 cores; "--threads 1" on a machine shared with other jobs.
BENCH_ARGS ?=
BENCHES := search_efficiency
bench: $(BIN)/genopt
	$(foreach b,$(BENCHES),$(BIN)/python -m bench.$(b) $(BENCH_ARGS) --md docs/benchmarks.md \
		--png docs/benchmarks_$(b).png &&) true

# `make soak`: workers SIGKILLed at random while readers read the study, on SQLite and PostgreSQL
# (docs/reliability.md); 30 minutes a storage. SOAK_ARGS="--quick": about 5 minutes in all.
# A third run puts that PostgreSQL behind a genopt proxy, SIGKILLed and started again halfway through
# (--quick with it: about 6.5 minutes in all).
SOAK_ARGS ?=
soak: $(BIN)/genopt
	$(BIN)/python tests/soak/chaos.py $(SOAK_ARGS)
