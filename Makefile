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
# Worker processes on this machine sharing TRIALS (each gets its share of the CPU threads).
WORKERS ?= 1
# Local workers placed on each GPU in turn, the rest on the CPU; empty: they share every GPU round-robin.
WORKERS_PER_GPU ?=
# `make dashboard`: the port optuna-dashboard listens on (127.0.0.1 only).
PORT ?= 8080
# `make export`: candidates for the ensemble (the best TOP_K trials) and how to combine them.
TOP_K ?= 5
MODE ?= auto
# Anything else for `genopt study`, e.g. ARGS="--enqueue lr=2e-4,batch_size=64,noise_dim=100".
ARGS ?=

STUDY_ARGS := --model $(MODEL) --dataset $(DATASET) --trials $(TRIALS) --storage $(STORAGE) \
	--study $(STUDY) --spec $(SPEC) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SEED),--seed $(SEED)) \
	--workers $(WORKERS) $(if $(WORKERS_PER_GPU),--workers-per-gpu $(WORKERS_PER_GPU)) $(ARGS)

.PHONY: study export dashboard test test-fast lint format venv clean-venv bench

$(BIN)/genopt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $@

venv: $(BIN)/genopt

study: $(BIN)/genopt
	$(BIN)/genopt study $(STUDY_ARGS)

dashboard: $(BIN)/genopt
	$(BIN)/genopt dashboard --storage $(STORAGE) --port $(PORT)

# Writes storage/exports/$(STUDY).pt, .json and .pt2 (the study's best generators as one sampler).
export: $(BIN)/genopt
	$(BIN)/genopt ensemble --study $(STUDY) --storage $(STORAGE) --top-k $(TOP_K) --mode $(MODE) --torch-export

lint: $(BIN)/genopt
	$(BIN)/ruff check genopt tests bench
	$(BIN)/ruff format --check genopt tests bench

format: $(BIN)/genopt
	$(BIN)/ruff format genopt tests bench
	$(BIN)/ruff check --fix genopt tests bench

# Every test; `make test-fast` leaves out those marked slow (studies, trials and console-script
# subprocesses), for the edit loop.
test: lint
	$(BIN)/python -m pytest

test-fast: $(BIN)/genopt
	$(BIN)/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)

# `make bench`: training throughput, FID cost and search efficiency (docs/benchmarks.md says what
# each measures); prints their tables and rewrites docs/benchmarks.md and its plots. The GPU
# sections (bench/gpu.py, cuda_graphs.py, gpu_workers.py) are rewritten only on a machine with a
# GPU; elsewhere the last GPU run's stay.
# BENCH_ARGS="--quick": at most two minutes each; "--threads 1" on a machine shared with other jobs.
BENCH_ARGS ?=
BENCHES := train_throughput precision_quality fid_eval search_efficiency levers
bench: $(BIN)/genopt
	mkdir -p storage/bench
	$(foreach b,$(BENCHES),$(BIN)/python bench/$(b).py $(BENCH_ARGS) --md storage/bench/$(b).md \
		--png docs/benchmarks_$(b).png &&) true
	$(BIN)/python bench/gpu.py $(BENCH_ARGS) --md docs/benchmarks_gpu.md
	$(BIN)/python bench/cuda_graphs.py $(BENCH_ARGS) --md docs/benchmarks_cuda_graphs.md
	$(BIN)/python bench/cuda_graphs.py $(BENCH_ARGS) --train --md docs/benchmarks_cuda_graphs_train.md
	$(BIN)/python bench/gpu_workers.py $(BENCH_ARGS) --md docs/benchmarks_gpu_workers.md
	BENCH_ARGS="$(BENCH_ARGS)" $(BIN)/python bench/collect.py docs/benchmarks.md \
		$(foreach b,$(BENCHES),storage/bench/$(b).md docs/benchmarks_$(b).png) docs/benchmarks_gpu.md - \
		docs/benchmarks_cuda_graphs.md - docs/benchmarks_cuda_graphs_train.md - docs/benchmarks_gpu_workers.md -
