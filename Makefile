# sftprep developer commands. Every target sets up what it needs from nothing:
# a fresh machine with Python 3.11, pip and make is enough.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo needs only the runtime package, not the test extras (torch, TRL, Ray, moto):
# it gets a venv of its own, so `make demo` stays small and `make test` keeps the full install.
DEMO_VENV ?= .venv-demo
DEMO_BIN := $(DEMO_VENV)/bin
DEMO_STAMP := $(DEMO_VENV)/.installed
OUT ?= out

.PHONY: demo test test-fast lint fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# mds exports are checked with streaming's own reader; its transformers<5 pin is not ours (pyproject.toml)
	$(BIN)/pip install --quiet --no-deps 'mosaicml-streaming>=0.11'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_BIN)/pip install --quiet --upgrade pip
	$(DEMO_BIN)/pip install --quiet -e .
	touch $(DEMO_STAMP)

## demo: build the sample data with the defaults and show what will be trained (runtime install only)
demo: $(DEMO_STAMP)
	$(DEMO_BIN)/sftprep build sample_data/qa.jsonl -o $(OUT)/qa --overwrite
	$(DEMO_BIN)/sftprep build sample_data/summarization.jsonl -o $(OUT)/summarization --overwrite
	$(DEMO_BIN)/sftprep build sample_data/translation.jsonl -o $(OUT)/translation --overwrite
	$(DEMO_BIN)/sftprep inspect $(OUT)/qa --limit 2
	$(DEMO_BIN)/sftprep inspect $(OUT)/qa --tokens --index 0
	@echo "Built $(OUT)/qa, $(OUT)/summarization and $(OUT)/translation; try: $(DEMO_BIN)/sftprep inspect $(OUT)/translation --stats"

## test: the whole suite, slow tests included (what CI runs)
test: $(STAMP)
	$(BIN)/pytest -q

## test-fast: skip the tests marked slow
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check sftprep tests bench scripts
	$(BIN)/ruff format --check sftprep tests bench scripts
	$(BIN)/mypy sftprep

fmt: $(STAMP)
	$(BIN)/ruff format sftprep tests bench scripts
	$(BIN)/ruff check --fix sftprep tests bench scripts

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/recipe.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(OUT) site .pytest_cache .ruff_cache .mypy_cache
