# logwarden — `make run` starts everything locally; `make test` runs the whole suite.
# Both set themselves up on first use (virtualenv, packages, Kafka jars from Maven Central).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?= .data
RUN := $(DATA)/run
API_PORT ?= $(or $(LOGWARDEN_STREAM_WEB_PORT),6066)
export LOGWARDEN_DATA_DIR ?= $(DATA)
# `make run` points the demo receivers at local stand-ins (`logwarden peers`): SMTP on 8025,
# Slack Web API and Twilio Messages on 8026. Real credentials come from the environment.
PEERS_ENV := LOGWARDEN_ALERTING_SMTP='{"host": "127.0.0.1", "port": 8025}' \
	LOGWARDEN_ALERTING_SLACK='{"token": "xoxb-local", "base_url": "http://127.0.0.1:8026/api/", "signing_secret": "local"}' \
	LOGWARDEN_ALERTING_TWILIO='{"account_sid": "AC0local", "auth_token": "local", "from_number": "+15550000000", "base_url": "http://127.0.0.1:8026"}' \
	LOGWARDEN_ALERTING_VERDICT_SECRET=local-verdict-links

.PHONY: help install native native-clean kafka-jars browser helm run stop status test test-unit lint bench eval clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python >= 3.11 is required; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed native  ## create .venv, install logwarden and its dev tools, compile

# The per-event hot path compiled with mypyc (schemas/native.py lists it): rebuilt when a
# source is newer than its extension; a failed build leaves the plain Python modules.
native: $(BIN)/.installed  ## compile the ingest hot path with mypyc (optional, ~1 min)
	@$(BIN)/python deploy/build_native.py --if-stale

native-clean:  ## remove the compiled modules (the plain Python ones run)
	@$(PYTHON) deploy/build_native.py clean

.cache/kafka/libs/.complete: deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) not found: install maven and openjdk-17-jre-headless, or set LOGWARDEN_KAFKA_BOOTSTRAP"; exit 1; }
	rm -rf .cache/kafka/libs.partial
	cd deploy/kafka && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(CURDIR)/.cache/kafka/libs.partial
	rm -rf .cache/kafka/libs && mv .cache/kafka/libs.partial .cache/kafka/libs
	touch $@

kafka-jars: .cache/kafka/libs/.complete  ## resolve the Kafka jars into .cache/kafka

# helm for the chart tests (`helm lint`, `helm template` of deploy/helm), built from the Go
# module proxy once per version (Go's build cache makes a rebuild take seconds).
HELM_VERSION := v3.21.4
export LOGWARDEN_TEST_HELM := $(CURDIR)/.cache/helm/$(HELM_VERSION)/helm
$(LOGWARDEN_TEST_HELM):
	@command -v go >/dev/null || { echo "error: Go not found: the chart tests build helm with it (install golang, or put helm on PATH and set LOGWARDEN_TEST_HELM)"; exit 1; }
	GOBIN=$(dir $@) GOFLAGS=-buildvcs=false go install -ldflags "-s -w" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

helm: $(LOGWARDEN_TEST_HELM)  ## build helm (chart tests) into .cache/helm

run: install kafka-jars  ## start Kafka, the all-in-one worker and demo traffic (background)
	@mkdir -p $(RUN)
	@$(BIN)/logwarden kafka up
	@if [ -f $(RUN)/peers.pid ] && kill -0 $$(cat $(RUN)/peers.pid) 2>/dev/null; then :; else \
		nohup $(BIN)/logwarden peers > $(RUN)/peers.log 2>&1 & echo $$! > $(RUN)/peers.pid; fi
	@if [ -f $(RUN)/worker.pid ] && kill -0 $$(cat $(RUN)/worker.pid) 2>/dev/null; then \
		echo "worker already running (pid $$(cat $(RUN)/worker.pid))"; \
	else \
		$(PEERS_ENV) nohup $(BIN)/logwarden worker > $(RUN)/worker.log 2>&1 & echo $$! > $(RUN)/worker.pid; \
		echo "worker starting (pid $$(cat $(RUN)/worker.pid)), log: $(RUN)/worker.log"; \
	fi
	@for i in $$(seq 1 120); do \
		curl -fsS http://127.0.0.1:$(API_PORT)/api/health >/dev/null 2>&1 && break; \
		kill -0 $$(cat $(RUN)/worker.pid) 2>/dev/null || { echo "error: the worker exited:"; tail -n 30 $(RUN)/worker.log; exit 1; }; \
		sleep 1; done
	@if [ -f $(RUN)/demo.pid ] && kill -0 $$(cat $(RUN)/demo.pid) 2>/dev/null; then :; else \
		nohup $(BIN)/logwarden demo --labels $(RUN)/demo-labels.jsonl > $(RUN)/demo.log 2>&1 & echo $$! > $(RUN)/demo.pid; fi
	@echo ""
	@echo "logwarden is running:"
	@echo "  dashboards:    http://127.0.0.1:$(API_PORT)/"
	@echo "  API + health:  http://127.0.0.1:$(API_PORT)/api/health (OpenAPI: /api/openapi.json)"
	@echo "  Prometheus:    http://127.0.0.1:$(API_PORT)/metrics"
	@echo "  query:         $(BIN)/logwarden query 'SELECT service, count() FROM logwarden.logs GROUP BY service'"
	@echo "  demo traffic:  $(RUN)/demo.log (incident labels: $(RUN)/demo-labels.jsonl)"
	@echo "  pages sent:    $(RUN)/peers.log (local SMTP/Slack/Twilio stand-ins)"
	@echo "  stop it all:   make stop"

stop:  ## stop the demo, the worker and the local Kafka
	@for p in demo worker peers; do \
		if [ -f $(RUN)/$$p.pid ]; then pid=$$(cat $(RUN)/$$p.pid); \
			if kill -0 $$pid 2>/dev/null; then kill $$pid; \
				for i in $$(seq 1 30); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; \
				kill -0 $$pid 2>/dev/null && kill -9 $$pid; echo "stopped $$p ($$pid)"; fi; \
			rm -f $(RUN)/$$p.pid; fi; done
	@if [ -x $(BIN)/logwarden ]; then $(BIN)/logwarden kafka down; fi

status: install  ## is the local Kafka up, does the worker answer
	@$(BIN)/logwarden kafka status || true
	@curl -fsS http://127.0.0.1:$(API_PORT)/api/health || echo "worker: not answering on port $(API_PORT)"

# Headless Chromium for the dashboard tests and pango for PDF reports, from Debian's packages.
browser:  ## install chromium, chromium-driver and pango (needs root or sudo)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
		|| ! ldconfig -p | grep -q libpangoft2-1.0; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			chromium chromium-driver libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; fi

test: install kafka-jars browser helm  ## run the whole suite (starts and stops its own Kafka)
	$(BIN)/pytest -q

test-unit: install helm  ## only the unit tests (no broker, no database)
	$(BIN)/pytest -q tests/unit

lint: install  ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install kafka-jars  ## throughput, memory and latency benchmarks (one JSON line each)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.privacy
	$(BIN)/python -m bench.detect
	$(BIN)/python -m bench.evidence
	$(BIN)/python -m bench.alert
	$(BIN)/python -m bench.otlp
	$(BIN)/python -m bench.cluster

eval: install  ## categorisation (Loghub, leave one out; demo template counts), detection (NAB), demo scenario
	$(BIN)/logwarden eval loghub
	$(BIN)/logwarden eval templates
	$(BIN)/logwarden eval nab --transfer
	$(BIN)/logwarden eval scenarios
	$(BIN)/logwarden eval incidents
	$(BIN)/logwarden eval scenarios --profile realistic --seeds 2 --duration 20m --rate 100
	$(BIN)/logwarden eval nezha --before
	$(BIN)/logwarden eval nezha-delay
	$(BIN)/logwarden eval paging

clean:  ## remove the local data (not the venv or the jar cache)
	rm -rf $(DATA)
