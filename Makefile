# sftprep developer commands. Every target sets up what it needs from nothing:
# a fresh machine with Python 3.11, pip and make is enough.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: demo test test-fast lint fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: build the sample data with the defaults and show what will be trained
demo: $(STAMP)
	$(BIN)/sftprep build sample_data/qa.jsonl -o $(OUT)/qa --overwrite
	$(BIN)/sftprep build sample_data/summarization.jsonl -o $(OUT)/summarization --overwrite
	$(BIN)/sftprep build sample_data/translation.jsonl -o $(OUT)/translation --overwrite
	$(BIN)/sftprep inspect $(OUT)/qa --limit 2
	$(BIN)/sftprep inspect $(OUT)/qa --tokens --index 0
	@echo "Built $(OUT)/qa, $(OUT)/summarization and $(OUT)/translation; try: $(BIN)/sftprep inspect $(OUT)/translation --stats"

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

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .mypy_cache
