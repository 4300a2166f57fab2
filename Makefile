# bundler: `make demo` runs the main job on local sample sources; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# test processes (pytest-xdist): twice the cores, since a test waits on its registry, site and git as much as it computes
TEST_JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
PYTEST := $(BIN)/pytest -q -n $(TEST_JOBS) --dist worksteal

.PHONY: install deps test unit integration lint docs bench bench-fleet demo demo-stop clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages (installed when root, else the command to run is printed) and the Docker engine
deps:
	devtools/deps.sh --engine

test: install deps
	$(PYTEST)

unit: install
	$(PYTEST) -m "not integration"

integration: install deps
	$(PYTEST) -m integration

lint: install
	$(BIN)/ruff check bundler tests devtools
	$(BIN)/mypy bundler
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

bench: install
	devtools/deps.sh
	$(BIN)/python -m devtools.bench

# a release rolled out through a hub to 12 stores on shaped links (network namespaces: root)
bench-fleet: install
	devtools/deps.sh
	$(BIN)/python -m devtools.bench_fleet

demo: install
	devtools/deps.sh
	$(BIN)/python -m devtools.demo

demo-stop: install
	$(BIN)/python -m devtools.demo --stop

clean:
	rm -rf $(VENV) .demo .bench .docs-site .pytest_cache .mypy_cache .ruff_cache
