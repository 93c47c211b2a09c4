# Everything a fresh machine needs, from Python 3.11+ and make alone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint clean bench bench-smoke fuzz soak-smoke

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project's metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed  ## serve the API on http://127.0.0.1:8000 (embedded PostgreSQL unless DATABASE_URL)
	$(BIN)/sonarly-api serve --migrate

test: $(VENV)/.installed-dev  ## the whole test suite (embedded PostgreSQL unless TEST_DATABASE_URL)
	$(BIN)/pytest

lint: $(VENV)/.installed-dev $(VENV)/.installed-bench  ## ruff + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src tests bench

.PHONY: deploy-check
deploy-check: $(VENV)/.installed-dev  ## lint the Dockerfile (hadolint) and validate docker-compose.yml; no Docker engine needed
	$(BIN)/hadolint Dockerfile
	@command -v docker-compose >/dev/null || { echo "docker-compose not found (Debian: apt-get install docker-compose)" >&2; exit 1; }
	API_KEY_PEPPER=placeholder-for-validation docker-compose --file docker-compose.yml config --quiet

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

bench: $(VENV)/.installed-bench  ## service vs baseline at 1M rows, embedded and (BENCH_DATABASE_URL) over TCP (BENCH_ARGS=--rows-10m, --profile); writes docs/performance.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)

.PHONY: bench-import
bench-import: $(VENV)/.installed-bench  ## 1M-row import into 1M rows vs plain COPY, peak RSS, embedded and (BENCH_DATABASE_URL) over TCP (BENCH_ARGS=--rows-10m); writes docs/performance.md
	$(BIN)/python -m bench.import_bench $(BENCH_ARGS)

.PHONY: bench-jobs
bench-jobs: $(VENV)/.installed-bench  ## job pick-up, a 2,000-result job, jobs vs importer, 500 jobs on 2 workers, lookups under jobs (BENCH_ARGS=--smoke); writes docs/performance.md
	$(BIN)/python -m bench.jobs_bench $(BENCH_ARGS)

bench-smoke: $(VENV)/.installed-bench  ## the harness end to end on a tiny dataset, a few minutes; both paths with BENCH_DATABASE_URL (CI)
	$(BIN)/python -m bench.run --smoke

fuzz: $(VENV)/.installed-dev  ## Schemathesis CLI, every check, against a real server (FUZZ_ARGS=--max-examples N)
	$(BIN)/python -m bench.fuzz $(FUZZ_ARGS)

soak-smoke: $(VENV)/.installed-dev  ## 30 s of mixed open-loop traffic against a real server (CI); 10 min: python -m bench.soak
	$(BIN)/python -m bench.soak --smoke
