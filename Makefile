# spidrkit: the two commands a new user runs are `make demo` and `make test`; CI runs `make lint test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	# torch first: the CPU build on this machine's disk; a range in pyproject then installs nothing more
	$(BIN)/pip install "torch==$(TORCH_VERSION)"

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/spidrkit demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache   # the layers of pyproject.toml [tool.importlinter]: imports point down, no cycles

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) runs build dist *.egg-info
