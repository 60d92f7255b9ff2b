# spectroauth: `make run` to try it, `make test` to prove it.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
PLUGINS := $(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/main.go))))
RUN_ARGS ?=

.PHONY: all build daemon plugins run test test-unit test-examples test-e2e lint bench bench-postgres proto proto-check clean help fuzz fuzz-short soak

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: daemon plugins ## build bin/spectroauthd and every plugin into bin/plugins/

daemon:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/spectroauthd ./host

plugins:
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p (stripped)"; $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; done

run: build ## build everything and start the daemon on its embedded development defaults
	$(BIN)/spectroauthd $(RUN_ARGS)

test: lint proto-check test-unit test-examples test-e2e fuzz-short ## the whole suite (what CI runs)

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test-unit: build ## Go tests with the race detector (the e2e package runs in test-e2e)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/host/e2e$$')

test-examples: ## the example plugins, each its own Go module
	cd examples/resolver-go && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd examples/resolver-node && $(GO) vet ./... && $(GO) test -race -count=1 ./...

E2E_NODE := host/e2e/testdata/node

test-e2e: build ## Backstage's own client in headless Chromium and a Backstage backend (skipped, with a message, without Chromium and Node)
	@command -v node >/dev/null 2>&1 || echo "e2e: SKIP: node not found (install Node.js 20+), so the e2e tests will skip"
	@[ -f $(E2E_NODE)/node_modules/.package-lock.json ] || echo "e2e: SKIP: $(E2E_NODE)/node_modules missing (cd $(E2E_NODE) && npm ci --ignore-scripts), so the e2e tests will skip"
	@command -v chromium >/dev/null 2>&1 || echo "e2e: SKIP: chromium not found (apt-get install chromium), so the browser tests will skip"
	@[ -f $(E2E_NODE)/node_modules/better-sqlite3/build/Release/better_sqlite3.node ] || echo "e2e: SKIP: better-sqlite3 not compiled (cd $(E2E_NODE) && npm run build-native), so the backend test will skip"
	SPECTROAUTHD=$(CURDIR)/$(BIN)/spectroauthd SPECTROAUTH_E2E_REQUIRE=$${CI:+1} $(GO) test -count=1 -timeout 10m -v ./host/e2e

FUZZTIME ?= 5m

fuzz-short: ## every fuzz target for 3 s (part of make test); failing inputs land in testdata/fuzz/
	GO=$(GO) .ci/fuzz 3s

fuzz: ## every fuzz target for FUZZTIME (default 5m) each; FUZZ=regexp picks targets
	GO=$(GO) .ci/fuzz $(FUZZTIME) '$(or $(FUZZ),.)'

SOAK_REFRESHES   ?= 1000000
SOAK_FAULT_EVERY ?= 5s

soak: build ## refreshes and sign-ins under injected faults (plugin killed, daemon SIGTERM/SIGKILL); SOAK_REFRESHES, SOAK_FAULT_EVERY
	SPECTROAUTHD=$(CURDIR)/$(BIN)/spectroauthd SOAK_PLUGINS=$(CURDIR)/$(BIN)/plugins SOAK_REFRESHES=$(SOAK_REFRESHES) SOAK_FAULT_EVERY=$(SOAK_FAULT_EVERY) \
		$(GO) test -count=1 -run '^TestSoak$$' -timeout 3h -v ./host/crashtest

bench: build ## Go benchmarks, then the /refresh load benchmark (table on stdout, figures in bench-results.json)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./host/loadbench -daemon $(BIN)/spectroauthd -plugins $(BIN)/plugins -out bench-results.json

bench-postgres: build ## the /refresh load benchmark on PostgreSQL storage (figures in bench-results-postgres.json)
	$(GO) run ./host/loadbench -daemon $(BIN)/spectroauthd -plugins $(BIN)/plugins -storage postgres -out bench-results-postgres.json

proto: ## regenerate proto/ Go code with buf (pinned, no network beyond the module proxy)
	proto/generate.sh

proto-check: ## fail when the committed generated code is stale
	proto/check-generated.sh

clean:
	rm -rf $(BIN)
