# The README's two commands: `make run` and `make test`. Both set everything up from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := static/vendor
ASSETS := $(VENDOR)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint types unit setup assets browser clean

setup: $(STAMP) $(ASSETS)

assets: $(ASSETS)

# htmx comes from the npm registry at the versions package-lock.json pins; nothing of it is
# committed. The builds the pages load are copied into static/vendor/.
$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)/htmx2 $(VENDOR)/htmx4
	cp node_modules/htmx2/dist/htmx.min.js node_modules/htmx-ext-sse/dist/sse.min.js $(VENDOR)/htmx2/
	cp node_modules/htmx4/dist/htmx.min.js node_modules/htmx4/dist/ext/hx-sse.min.js $(VENDOR)/htmx4/
	touch $(ASSETS)

# Browser tests drive Debian's Chromium through Playwright (Playwright's own browser download
# cannot work here). Installed with apt when missing; CI runs as root.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,example]'
	touch $(STAMP)

# The example app: seed the demo tenants (first run only), bring every tenant to the
# migrations' head, then serve with two workers (any worker serves any page or stream).
WORKERS ?= 2

run: setup
	mkdir -p var
	$(BIN)/python -m app.seed
	$(BIN)/fdbsync upgrade --all-tenants
	$(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT) --workers $(WORKERS) --timeout-graceful-shutdown 5

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy fdbsync

unit: setup browser
	$(BIN)/pytest

test: lint types unit

clean:
	rm -rf $(VENV) var node_modules $(VENDOR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
