# First run: `make demo` or `make test` on a fresh clone sets up .venv and everything in it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nbserve-installed
DEMO_DIR := demo_models

.PHONY: setup demo test browser lint protos bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# a test/client dependency only: it declares full `tensorflow`, which tensorflow-cpu already provides
	$(BIN)/python -m pip install -q --no-deps tensorflow-serving-api==2.21.0
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python examples/run_demo.py --workdir $(DEMO_DIR)

# Debian's Chromium for tests/notebooks/test_browser.py (Playwright drives it; never `playwright install`)
browser:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

test: setup browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check .

protos: setup
	$(BIN)/python protos/generate.py

bench: setup
	$(BIN)/python bench/latency.py

soak: setup
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
