# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell md5sum pyproject.toml | cut -c1-12)

.PHONY: run test bench lint deps demo clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

# PostgreSQL server binaries for the throw-away test cluster, and Chromium (installed when missing).
deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
	  echo "installing PostgreSQL server binaries"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi; \
	fi
	@command -v psql >/dev/null 2>&1 || { echo "psql missing after install"; exit 1; }
	@# Chromium for the dashboard's browser tests (Playwright drives it; `playwright install` cannot download here).
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing chromium"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; \
	fi

demo: $(STAMP)
	$(BIN)/migrator demo

run: $(STAMP) demo
	@rm -f data/demo-target.db
	$(BIN)/migrator run --again --source csv:///demo --target sqlite:///demo-target.db --batch-size 5000
	$(BIN)/migrator serve

test: $(STAMP) deps
	$(BIN)/pytest

bench: $(STAMP) deps
	$(BIN)/python bench/run.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/mongo.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/sync.py

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy service

clean:
	rm -rf $(VENV) var data/demo data/demo-target.db .pytest_cache
