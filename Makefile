# Two commands on a fresh Debian machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint system-deps js-deps bench bench-smoke clean

# Debian ships venv support separately (python3-venv): install it when root and it is missing.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/ppy serve

# Tools the tests drive for real (php-cli, phpunit, chromium, haproxy, ...), via apt-get when root.
system-deps:
	bash scripts/system-deps.sh

# npm packages the schema tests run (ajv, ajv-formats, @open-rpc/schema-utils-js): tests/js/node_modules, kept.
JS_STAMP := tests/js/node_modules/.installed-stamp
$(JS_STAMP): tests/js/package.json
	npm install --prefix tests/js --no-audit --no-fund --silent
	touch $(JS_STAMP)

js-deps: $(JS_STAMP)

# PHP: PSR-12 via phpcs (Debian's php-codesniffer, from `make system-deps`). Missing: an error under
# CI=true, else the PHP part is skipped with a message.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	@if command -v phpcs >/dev/null 2>&1; then phpcs --standard=PSR12 clients/php && echo "phpcs: clients/php is PSR-12 clean"; \
	elif [ "$${CI:-}" = true ] || [ "$${CI:-}" = 1 ]; then \
		echo "lint: phpcs is missing (Debian package php-codesniffer; make system-deps installs it as root)" >&2; exit 1; \
	else echo "lint: phpcs is not installed, PHP lint skipped (make system-deps installs php-codesniffer as root)" >&2; fi

test: install system-deps js-deps lint
	$(BIN)/python -m pytest -q

# The fast tier (pytest marker `fast`: codecs, layering, in-memory connections; no subprocess): < 1 min.
test-fast: install
	$(BIN)/python -m pytest -q -m fast

# The benchmark matrix against the baselines (bench/run.py); writes BENCHMARKS.md. ~12 minutes.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench/build/%: bench/%.c
	mkdir -p bench/build
	$${CC:-cc} -O2 -Wall -o $@ $<

bench: $(BENCH_STAMP) bench/build/loadgen bench/build/cserver
	$(BIN)/python bench/run.py

# One short point per dialect: checks that the benchmark still runs (numbers are not judged).
bench-smoke: install bench/build/loadgen bench/build/cserver
	$(BIN)/python bench/run.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
