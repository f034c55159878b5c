# Developer and CI entry points. `make test` is the project's test command (README, .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SRC := src tests bench

.DEFAULT_GOAL := help
.PHONY: help venv test run lint format clean bench fuzz

help:
	@echo "make venv    create $(VENV) and install the project with the dev extra"
	@echo "make test    system deps, ruff, ruff format --check, mypy, pytest -n 2"
	@echo "make run     run the server in demo mode"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make format  ruff format and ruff check --fix"
	@echo "make clean   remove $(VENV), caches and build output"
	@echo "make bench   benchmark (~10 minutes, with the floor reference): bench-results/report.md, results.json, ratios.png; then make fuzz"
	@echo "make fuzz    the fuzz tests with many more cases than CI, new ones each run (~3 minutes; FUZZ_EXAMPLES, LICENSOR_FUZZ_SEED)"

venv: $(STAMP)

# Created once; the install is re-run only when pyproject.toml is newer than the stamp.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

test: venv
	bash scripts/ensure-system-deps.sh
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy
	$(BIN)/pytest -n 2

run: venv
	$(BIN)/licensor serve --demo

lint: venv
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
	find src -maxdepth 1 -name '*.egg-info' -type d -prune -exec rm -rf {} +

bench: venv
	$(BIN)/python bench/run.py
	$(MAKE) fuzz

# CI runs the same tests with few cases and a fixed seed; here many more, with a new seed each
# run (printed: LICENSOR_FUZZ_SEED=<it> make fuzz runs the same cases again).
FUZZ_EXAMPLES ?= 200
fuzz: venv
	bash scripts/ensure-system-deps.sh
	@seed=$${LICENSOR_FUZZ_SEED:-$$(date +%s)}; echo "fuzz: LICENSOR_FUZZ_SEED=$$seed, $(FUZZ_EXAMPLES) cases per operation"; \
	LICENSOR_FUZZ_SEED=$$seed LICENSOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	$(BIN)/pytest -n 2 -p no:cacheprovider tests/server/test_schema_fuzz.py \
	"tests/server/test_bad_input.py::test_fuzz_never_5xx_always_signed"
