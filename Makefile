# og-inference-async: the two commands of the README.
#   make demo  - set everything up and run the full flow on the offline devnet
#   make test  - set everything up and run every check (ruff, mypy strict, pytest)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck pytest bench chaos devnet clean

# Both distributions come from this repository: the SDK (.) and the devnet (./devnet, og-inference-devnet).
$(STAMP): pyproject.toml devnet/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -e ./devnet
	$(PY) -m og_inference_devnet install
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) examples/quickstart.py

lint: setup
	$(PY) -m ruff check og_inference_async devnet tests benchmarks examples scripts
	$(PY) -m ruff format --check og_inference_async devnet

typecheck: setup
	$(PY) -m mypy -p og_inference_async
	MYPYPATH=devnet $(PY) -m mypy -p og_inference_devnet

pytest: setup
	$(PY) -m pytest -q

test: lint typecheck pytest

bench: setup
	$(PY) benchmarks/run_all.py

chaos: setup
	$(PY) benchmarks/chaos.py

devnet: setup
	$(PY) -m og_inference_devnet up

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
