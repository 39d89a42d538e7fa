# Set-up on a fresh machine is part of every target: the first run creates .venv and installs what is needed.
PYTHON ?= python3
# The supported transformers releases (the range is setup.cfg's pin and modeling/configuration_supermask.py's
# TESTED_TRANSFORMERS): .venv has the oldest (`make test`: the whole suite), .venv-newest the newest (`make
# test-newest`: the transformers-facing tests). CI runs both.
OLDEST_TRANSFORMERS ?= 5.23.0
NEWEST_TRANSFORMERS ?= 5.25.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(OLDEST_TRANSFORMERS)-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

NEWEST_VENV ?= .venv-newest
NEWEST_BIN := $(NEWEST_VENV)/bin
NEWEST_STAMP := $(NEWEST_VENV)/.installed-$(NEWEST_TRANSFORMERS)-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
# The tests that touch transformers: its internals (transformers_compat), modeling, generation and the dense export,
# remote code, the pipeline, a Trainer run and its reload, the shipped models (a few minutes on 2 cores).
TRANSFORMERS_FACING_TESTS := tests/test_transformers_compat.py tests/test_modeling.py tests/test_pipeline_translation.py \
	tests/test_checkpoint_integrity.py tests/test_mask_coding.py tests/test_coats.py tests/test_shipped_model.py \
	tests/test_shipped_directions.py \
	tests/test_training.py::test_reload_translates_identically

.PHONY: install install-newest lint format test test-newest test-all demo clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel of torch (an unpinned torch pulls a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]" "transformers==$(OLDEST_TRANSFORMERS)"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# The same, in a second venv, with the newest supported transformers.
$(NEWEST_STAMP):
	$(PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_BIN)/pip install --quiet --upgrade pip
	$(NEWEST_BIN)/pip install --quiet torch==2.13.0
	$(NEWEST_BIN)/pip install --quiet -e ".[test]" "transformers==$(NEWEST_TRANSFORMERS)"
	rm -f $(NEWEST_VENV)/.installed-* && touch $@

install-newest: $(NEWEST_STAMP)

## ruff: lint and format check (`make format` applies the formatter and the safe fixes).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## The test suite (fast tests; about 10 minutes at most on 2 cores).
test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow" -q

## The transformers-facing tests on the newest supported transformers (`make test` runs the oldest).
test-newest: $(NEWEST_STAMP)
	$(NEWEST_BIN)/python -c "import transformers; print('transformers', transformers.__version__)"
	$(OFFLINE) $(NEWEST_BIN)/python -m pytest -m "not slow" -q $(TRANSFORMERS_FACING_TESTS)

## Everything, slow tests included.
test-all: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q

## The main job (about 10 minutes on 2 cores): the shipped found model translates and is scored on
## test_2016_flickr through pipeline("translation"); then masks are found for a few minutes, validation BLEU printed.
demo: $(STAMP)
	$(OFFLINE) $(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) $(NEWEST_VENV) outputs
