# Set-up on a fresh machine is part of every target: the first run creates .venv and installs what is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install test test-all demo clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel of torch (an unpinned torch pulls a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## The test suite (fast tests; about 10 minutes at most on 2 cores).
test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow" -q

## Everything, slow tests included.
test-all: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q

## The main job: train a small supermask model on Multi30k en->de, report test BLEU, translate.
## (It rebuilds outputs/demo-en-de: the script itself refuses to overwrite a folder unless told to.)
demo: $(STAMP)
	$(OFFLINE) $(BIN)/python scripts/train_translation.py scripts/demo.json --overwrite_output_dir

clean:
	rm -rf $(VENV) outputs
