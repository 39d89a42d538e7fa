# Set-up on a fresh machine is part of every target: the first run creates .venv and installs what is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install lint format test test-all demo clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel of torch (an unpinned torch pulls a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

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

## Everything, slow tests included.
test-all: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q

## The main job (about 10 minutes on 2 cores): the shipped found model translates and is scored on
## test_2016_flickr through pipeline("translation"); then masks are found for a few minutes, validation BLEU printed.
demo: $(STAMP)
	$(OFFLINE) $(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) outputs
