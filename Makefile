# Estrade — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
export ESTRADE_DATA_DIR ?= $(CURDIR)/data
PG_BIN ?= /usr/lib/postgresql/15/bin
# Screenshots and other artefacts written by the tests.
ARTIFACTS ?= $(CURDIR)/artifacts
export ESTRADE_ARTIFACTS := $(ARTIFACTS)

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# Two stamps: the package alone (what `make run` needs), then the test, lint, browser-test and
# deploy tools (what `make test`, `make lint` and the deploy tier need).
$(BIN)/python:
	@scripts/need $(PYTHON):python3 gcc:gcc
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || scripts/need /usr/lib/python3/dist-packages/ensurepip:python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[test,lint,browser,deploy]"
	touch $(DEV_STAMP)

.PHONY: install
install: $(DEV_STAMP) ## Create .venv and install Estrade with its test, lint and browser-test tools

.PHONY: run
run: $(STAMP) ## Migrate, seed the demo room and serve on http://127.0.0.1:8000 (SQLite in ./data)
	ESTRADE_DEMO=true $(BIN)/estrade serve

.PHONY: system-deps
system-deps: system-deps-fast ## Install the system packages the tests need (as root on Debian)
	@scripts/need $(PG_BIN)/pg_ctl:postgresql-15 chromium:chromium
	@scripts/need nft:nftables nginx:nginx-light systemd-analyze:systemd openssl:openssl

.PHONY: system-deps-fast
system-deps-fast: # What make test-fast needs: Prometheus and promtool (tests/test_monitoring.py), coturn and nginx's stream module (tests/test_turn_tls.py)
	@scripts/need promtool:prometheus prometheus:prometheus
	@scripts/need nginx:nginx-light /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream turnserver:coturn

.PHONY: test
test: $(DEV_STAMP) system-deps ## Run every test (SQLite and PostgreSQL, browser, static deploy checks)
	PATH="$(PG_BIN):$$PATH" $(BIN)/pytest -p no:cacheprovider

# Deselected by marker (pyproject.toml): `browser` tests, the `postgres` half of the database
# fixtures and the `slow` static deploy checks (Ansible, pyinfra). The rest runs on SQLite.
FAST_MARKERS := not browser and not postgres and not slow
.PHONY: test-fast
test-fast: $(DEV_STAMP) system-deps-fast ## Inner loop: no browser, SQLite only, no Ansible runs (make test runs all)
	$(BIN)/pytest -p no:cacheprovider -m "$(FAST_MARKERS)" --durations=10

.PHONY: guide-images
guide-images: $(DEV_STAMP) system-deps ## Retake the guide's pictures (docs/img) with the browser test that tells the guide
	ESTRADE_GUIDE_IMAGES=$(CURDIR)/docs/img $(BIN)/pytest -p no:cacheprovider -q tests/browser/test_guide.py
	@find docs/img -name '*.png' -size +150k -printf 'larger than 150 KB: %p\n'

.PHONY: wheelhouse
wheelhouse: $(STAMP) ## Build dist/wheelhouse: Estrade's wheel and every dependency, for offline hosts
	rm -rf dist/wheelhouse
	$(BIN)/pip wheel -q . -w dist/wheelhouse

# Cache of the booted tier's bookworm root (outside the repository, kept between runs).
DEPLOY_CACHE ?= /var/cache/estrade-test
export ESTRADE_TEST_CACHE := $(DEPLOY_CACHE)

.PHONY: test-deploy
test-deploy: $(DEV_STAMP) system-deps wheelhouse ## Boot fresh Debian hosts (systemd-nspawn), converge with Ansible and pyinfra
	@scripts/need systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux flock:util-linux
	tests/deploy/build-root.sh
	$(BIN)/pytest -p no:cacheprovider -v -s --durations=0 --timeout=3600 tests/deploy/booted.py

BOOTS ?= 10
.PHONY: test-boots
test-boots: $(DEV_STAMP) ## Boot and stop BOOTS fresh nspawn hosts in a row (default 10), with timings
	@scripts/need systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux flock:util-linux
	tests/deploy/build-root.sh
	$(BIN)/pytest -p no:cacheprovider -v -s --timeout=0 tests/deploy/booted.py -k boots_and_stops --boots $(BOOTS)

.PHONY: lint
lint: $(DEV_STAMP) ## Ruff lint and format check, mypy on appliance/, role READMEs up to date
	$(BIN)/ruff check appliance tests benchmarks provisioning
	$(BIN)/ruff format --check appliance tests benchmarks provisioning
	$(BIN)/mypy
	@$(BIN)/python -m provisioning.role_docs --check || { echo "run: make role-docs" >&2; exit 1; }

.PHONY: format
format: $(DEV_STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix appliance tests benchmarks provisioning
	$(BIN)/ruff format appliance tests benchmarks provisioning
	$(BIN)/python -m provisioning.role_docs

.PHONY: role-docs
role-docs: $(DEV_STAMP) ## Rewrite the variables table of each roles/*/README.md from the role's defaults
	$(BIN)/python -m provisioning.role_docs

.PHONY: bench
bench: $(DEV_STAMP) ## Run the benchmarks (one JSON line each)
	@scripts/need wrk:wrk
	@$(BIN)/pip install -q -e ".[bench]"
	@for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

.PHONY: clean
clean: ## Remove the virtualenv and caches (keeps ./data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
