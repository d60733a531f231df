# Front door of the project: `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config.yaml
BIN := $(VENV)/bin
SEGMENT := $(BIN)/segment
# Stamps keyed on the lock files: the environment is rebuilt only when a lock changes.
RUNTIME_STAMP := $(VENV)/.runtime.stamp
DEV_STAMP := $(VENV)/.dev.stamp
SPARK_STAMP := $(VENV)/.spark.stamp
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(RUNTIME_STAMP): requirements/runtime.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --require-hashes --no-deps -r requirements/runtime.lock
	$(PIP_INSTALL) --no-deps --no-build-isolation --editable .
	@touch $@

$(DEV_STAMP): requirements/dev.lock $(RUNTIME_STAMP)
	$(PIP_INSTALL) --require-hashes --no-deps -r requirements/dev.lock
	@touch $@

.PHONY: venv
venv: $(RUNTIME_STAMP) ## Create .venv from the runtime lock

.PHONY: dev
dev: $(DEV_STAMP) ## Create .venv with the development tools too

## Spark engine (optional: not part of venv, dev or the image)
# Spark 4 runs on Java 17: installed from Debian when `java` is missing or another version.
JAVA_PACKAGE := openjdk-17-jre-headless
JAVA_IS_17 := java -version 2>&1 | grep -q 'version "17[."]'

.PHONY: java
java:
	@$(JAVA_IS_17) && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "java: Spark needs Java 17; as root: apt-get install $(JAVA_PACKAGE)" >&2; exit 2; fi; \
	echo "installing $(JAVA_PACKAGE)"; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(JAVA_PACKAGE) >/dev/null; } \
		|| { echo "java: apt-get could not install $(JAVA_PACKAGE)" >&2; exit 2; }; \
	$(JAVA_IS_17) || { echo "java: $(JAVA_PACKAGE) is installed but \`java\` is not Java 17" \
		"(choose it with update-alternatives --config java)" >&2; exit 2; }

$(SPARK_STAMP): requirements/spark.lock $(RUNTIME_STAMP)
	$(PIP_INSTALL) --require-hashes --no-deps -r requirements/spark.lock
	@touch $@

.PHONY: spark
spark: java $(SPARK_STAMP) ## Add the Spark engine to .venv: Java 17 (as root, from Debian) and requirements/spark.lock

.PHONY: spark-test
spark-test: java $(SPARK_STAMP) $(DEV_STAMP) ## Start a local Spark cluster (1 master, 2 workers), run pytest tests/spark on it (the engines' agreement included), stop it
	$(BIN)/python scripts/spark_cluster.py run -- $(BIN)/pytest -rA tests/spark

## Pipeline (CONFIG=config.yaml by default)
# `make init` needs the data file; say so before building anything.
ifneq ($(filter init,$(MAKECMDGOALS)),)
ifeq ($(strip $(DATA)),)
$(error init: pass the data file: make init DATA=path/to/customers.csv [OUTPUT=file.yaml] [FORCE=1])
endif
endif

.PHONY: init
init: $(RUNTIME_STAMP) ## Write a commented config for your own table: make init DATA=file.csv [OUTPUT=file.yaml] [FORCE=1]
	$(SEGMENT) init "$(DATA)" $(if $(OUTPUT),--output "$(OUTPUT)") $(if $(FORCE),--force)

.PHONY: all
all: $(RUNTIME_STAMP) ## Run every stage on CONFIG and print where the report is
	$(SEGMENT) run --config $(CONFIG)

.PHONY: data
data: $(RUNTIME_STAMP) ## Download the data set (if missing) and check its SHA-256
	$(SEGMENT) fetch --config $(CONFIG)

.PHONY: customers
customers: $(RUNTIME_STAMP) ## Stage 0: aggregate a purchase log into one row per customer (data.kind: transactions)
	$(SEGMENT) customers --config $(CONFIG)

.PHONY: prepare
prepare: $(RUNTIME_STAMP) ## Stage 1: validate the data and build the feature matrix
	$(SEGMENT) prepare --config $(CONFIG)

.PHONY: select-k
select-k: $(RUNTIME_STAMP) ## Stage 2: sweep k and choose it
	$(SEGMENT) select-k --config $(CONFIG)

.PHONY: cluster
cluster: $(RUNTIME_STAMP) ## Stage 3: fit the final model, name and profile the segments
	$(SEGMENT) cluster --config $(CONFIG)

.PHONY: visualize
visualize: $(RUNTIME_STAMP) ## Stage 4: draw every chart (Vega-Lite JSON, PNG, SVG)
	$(SEGMENT) visualize --config $(CONFIG)

.PHONY: report
report: $(RUNTIME_STAMP) ## Stage 5: write the report, complete the version, switch latest
	$(SEGMENT) report --config $(CONFIG)

.PHONY: report-pdf
report-pdf: report ## Print the latest report to reports/pdf/<version>.pdf with headless Chromium
	@command -v chromium >/dev/null || { echo "report-pdf: needs Chromium (Debian: apt-get install chromium)" >&2; exit 2; }
	@version=$$(basename "$$(readlink reports/latest)"); mkdir -p reports/pdf; \
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
		--disable-component-update --disable-sync --no-first-run --no-pdf-header-footer \
		--user-data-dir="$$(mktemp -d)" --virtual-time-budget=20000 \
		--print-to-pdf="reports/pdf/$$version.pdf" "file://$(CURDIR)/reports/latest/index.html" 2>/dev/null; \
	echo "PDF: reports/pdf/$$version.pdf"

## Versions
.PHONY: verify
verify: $(RUNTIME_STAMP) ## Recompute the latest version in a scratch folder; compare every output hash
	$(SEGMENT) verify latest

.PHONY: versions
versions: $(RUNTIME_STAMP) ## List every version, newest first
	$(SEGMENT) versions

## Container
.PHONY: docker-test
docker-test: all ## As root: build the image on a stand-in base, run it offline as non-root, compare with the host run
	bash docker/test.sh

## Benchmark (not part of `make test`): BENCH_ARGS="--sizes 100k" for a quick run
# The pipeline runs from its own runtime-only environment, as users and the image install it: the
# development tools change what some libraries import (pandera loads hypothesis when present).
# The Spark rows run from another one, the runtime lock and the spark lock (`make spark` in it),
# so that pyspark's presence does not change the Polars rows; BENCH_ARGS="--spark none" skips it.
BENCH_ARGS ?=
BENCH_VENV ?= .venv-bench
BENCH_SPARK_VENV ?= .venv-bench-spark
BENCH_NO_SPARK := $(or $(findstring --spark none,$(BENCH_ARGS)),$(findstring --spark=none,$(BENCH_ARGS)))
.PHONY: bench
bench: $(DEV_STAMP) ## Benchmark against the notebook baseline and Spark (the Mall file; 100k, 1M, 10M customers; 10M, 100M purchases); writes bench/results.md
	$(MAKE) --no-print-directory venv VENV=$(BENCH_VENV)
	$(if $(BENCH_NO_SPARK),,$(MAKE) --no-print-directory spark VENV=$(BENCH_SPARK_VENV))
	$(BIN)/python bench/run.py --segment $(BENCH_VENV)/bin/segment \
		--spark-segment $(BENCH_SPARK_VENV)/bin/segment $(BENCH_ARGS)

## Tooling
.PHONY: test
test: $(DEV_STAMP) ## Run pre-commit on all files, then pytest
	$(BIN)/pre-commit run --all-files --show-diff-on-failure
	$(BIN)/pytest

.PHONY: lint
lint: $(DEV_STAMP) ## Run ruff and mypy only
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

.PHONY: lock
lock: ## Recompile the lock files from pyproject.toml (needs uv and the network)
	uv pip compile pyproject.toml requirements/build.in --generate-hashes --universal \
		--python-version 3.11 -o requirements/runtime.lock
	uv pip compile pyproject.toml requirements/build.in --extra dev --generate-hashes --universal \
		--python-version 3.11 -c requirements/runtime.lock -o requirements/dev.lock
	uv pip compile requirements/spark.in --generate-hashes --universal --python-version 3.11 \
		-c requirements/runtime.lock -c requirements/dev.lock -o requirements/spark.lock

.PHONY: clean
clean: ## Remove caches: stage cache, unfinished builds, tool caches (keeps every version and .venv)
	rm -rf artifacts/.cache artifacts/.staging reports/.staging .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
