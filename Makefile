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
# The JavaScript check tools (make lint-js): npm packages pinned by tools/js/package-lock.json.
JS_TOOLS := tools/js
JS_BIN := $(JS_TOOLS)/node_modules/.bin
JS_STAMP := $(JS_TOOLS)/node_modules/.installed
JS_SOURCES := appliance/web/static/js

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
install: $(DEV_STAMP) $(JS_STAMP) ## Create .venv and install Estrade with its test, lint and browser-test tools (and the JS check tools)

.PHONY: run
run: $(STAMP) ## Migrate, seed the demo room and serve on http://127.0.0.1:8000 (SQLite in ./data, one media worker)
	ESTRADE_DEMO=true ESTRADE_MEDIA_WORKERS=$${ESTRADE_MEDIA_WORKERS:-1} $(BIN)/estrade serve

.PHONY: system-deps
system-deps: system-deps-fast ## Install the system packages the tests need (as root on Debian)
	@scripts/need $(PG_BIN)/pg_ctl:postgresql-15 chromium:chromium firefox-esr:firefox-esr
	@scripts/need node:nodejs npm:npm
	@scripts/need nft:nftables nginx:nginx-light systemd-analyze:systemd openssl:openssl
	@scripts/need ip:iproute2 tc:iproute2

.PHONY: system-deps-fast
system-deps-fast: # What make test-fast needs: Prometheus and promtool (tests/test_monitoring.py), coturn and nginx's stream module (tests/test_turn_tls.py), redis-server (tests/hosts/), ffmpeg/ffprobe (tests/media/test_recording.py checks the recordings with them)
	@scripts/need promtool:prometheus prometheus:prometheus
	@scripts/need ffmpeg:ffmpeg ffprobe:ffmpeg
	@scripts/need nginx:nginx-light /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream turnserver:coturn
	@scripts/need redis-server:redis-server # the several-hosts tests start a throwaway one (tests/helpers/redis.py)

# puppeteer-core (pinned by tools/browser/package-lock.json) drives Debian's firefox-esr through
# WebDriver BiDi for the Firefox learner of the browser tests; it never downloads a browser.
BROWSER_TOOLS := tools/browser/node_modules/.installed
$(BROWSER_TOOLS): tools/browser/package.json tools/browser/package-lock.json
	@scripts/need node:nodejs npm:npm
	cd tools/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $(BROWSER_TOOLS)

.PHONY: browser-tools
browser-tools: $(BROWSER_TOOLS) ## Install the Node tools of the browser tests (tools/browser, no browser download)

.PHONY: test
test: $(DEV_STAMP) $(JS_STAMP) system-deps $(BROWSER_TOOLS) ## Run every test (SQLite and PostgreSQL, browser, static deploy checks)
	PATH="$(PG_BIN):$$PATH" $(BIN)/pytest -p no:cacheprovider

# Deselected by marker (pyproject.toml): `browser` tests, the `postgres` half of the database
# fixtures and the `slow` static deploy checks (Ansible, pyinfra). The rest runs on SQLite.
FAST_MARKERS := not browser and not postgres and not slow
.PHONY: test-fast
test-fast: $(DEV_STAMP) $(JS_STAMP) system-deps-fast ## Inner loop: no browser, SQLite only, no Ansible runs (make test runs all)
	$(BIN)/pytest -p no:cacheprovider -m "$(FAST_MARKERS)" --durations=10

.PHONY: guide-images
guide-images: $(DEV_STAMP) system-deps ## Retake the guide's pictures (docs/img) with the browser test that tells the guide
	ESTRADE_GUIDE_IMAGES=$(CURDIR)/docs/img $(BIN)/pytest -p no:cacheprovider -q tests/browser/test_guide.py
	@find docs/img -name '*.png' -size +150k -printf 'larger than 150 KB: %p\n'

.PHONY: wheelhouse
wheelhouse: $(STAMP) ## Build dist/wheelhouse: Estrade's wheel and every dependency, for offline hosts
	rm -rf dist/wheelhouse
	$(BIN)/pip wheel -q . -w dist/wheelhouse
	# redis needs async-timeout on Python < 3.11.3 (Debian bookworm's 3.11.2), a marker this
	# machine's Python does not meet: add it so offline bookworm hosts can install.
	$(BIN)/pip wheel -q --no-deps "async-timeout>=4.0.3" -w dist/wheelhouse

# Cache of the booted tier's bookworm root (outside the repository, kept between runs).
DEPLOY_CACHE ?= /var/cache/estrade-test
export ESTRADE_TEST_CACHE := $(DEPLOY_CACHE)

.PHONY: test-deploy
test-deploy: $(DEV_STAMP) system-deps wheelhouse ## Boot fresh Debian hosts (systemd-nspawn), converge with Ansible and pyinfra: one host, then four (a class through the proxy survives an app host)
	@scripts/need systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux flock:util-linux
	tests/deploy/build-root.sh
	$(BIN)/pytest -p no:cacheprovider -v -s --durations=0 --timeout=3600 tests/deploy/booted.py tests/deploy/booted_multihost.py

.PHONY: test-deploy-multihost
test-deploy-multihost: $(DEV_STAMP) system-deps wheelhouse ## Boot four hosts (database, two app hosts, proxy) in nspawn, converge inventories/multihost, a class through the proxy survives an app host (~10 min; part of test-deploy)
	@scripts/need systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux flock:util-linux
	tests/deploy/build-root.sh
	$(BIN)/pytest -p no:cacheprovider -v -s --durations=0 --timeout=3600 tests/deploy/booted_multihost.py

BOOTS ?= 10
.PHONY: test-boots
test-boots: $(DEV_STAMP) ## Boot and stop BOOTS fresh nspawn hosts in a row (default 10), with timings
	@scripts/need systemd-nspawn:systemd-container mmdebstrap:mmdebstrap nsenter:util-linux flock:util-linux
	tests/deploy/build-root.sh
	$(BIN)/pytest -p no:cacheprovider -v -s --timeout=0 tests/deploy/booted.py -k boots_and_stops --boots $(BOOTS)

# The web UI's JavaScript is checked as written (no build step): TypeScript reads the JSDoc types
# (jsconfig.json, checkJs) and ESLint lints it. Both come from npm, pinned by
# tools/js/package-lock.json, into tools/js/node_modules (never shipped: not in the wheel).
$(JS_STAMP): $(JS_TOOLS)/package.json $(JS_TOOLS)/package-lock.json
	@scripts/need node:nodejs npm:npm
	cd $(JS_TOOLS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(JS_STAMP)

.PHONY: js-tools
js-tools: $(JS_STAMP) ## Install the JavaScript check tools (TypeScript, ESLint) into tools/js

.PHONY: lint-js
lint-js: $(JS_STAMP) ## Type-check (tsc --noEmit, JSDoc) and lint (ESLint) the web UI's JavaScript
	$(JS_BIN)/tsc -p jsconfig.json
	$(JS_BIN)/tsc -p $(JS_TOOLS)/jsconfig.shared.json
	$(JS_BIN)/eslint --max-warnings 0 -c $(JS_TOOLS)/eslint.config.js $(JS_SOURCES)

.PHONY: lint
lint: $(DEV_STAMP) lint-js ## Ruff lint and format check, mypy --strict on appliance/, the JS check, role READMEs up to date
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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(JS_TOOLS)/node_modules
