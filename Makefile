# spectroauth: `make run` to try it, `make test` to prove it.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
PLUGINS := $(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/main.go))))
RUN_ARGS ?=

# Every binary is static (no libc: it runs FROM scratch), reproducible (the
# same commit gives the same bytes: -trimpath, no VCS stamp, empty build id)
# and stamped with its version and commit. VERSION, when the file exists,
# names the version; else git describe does.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell cat VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
ifeq ($(origin COMMIT),undefined)
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
endif
LDFLAGS := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='$(LDFLAGS)'

.PHONY: all build daemon plugins plugin-reload reload run test test-unit test-examples test-node-sdk test-e2e lint bench bench-postgres proto proto-check clean help release image test-release test-chart test-image fuzz fuzz-short soak

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: daemon plugins ## build bin/spectroauthd and every plugin into bin/plugins/

daemon:
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/spectroauthd ./host

plugins:
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do echo "go build -o $(BIN)/plugins/$$p ./plugins/$$p"; $(GOBUILD) -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; done

# The plugin author's inner loop against a daemon running CONFIG (make run
# RUN_ARGS='-config CONFIG' in another terminal): rebuild one plugin of
# plugins/, write its new digest into CONFIG, reload the daemon. Seconds.
plugin-reload: ## rebuild plugins/PLUGIN, write its sha256 into CONFIG and reload the running daemon: make plugin-reload PLUGIN=claims CONFIG=dev.yaml
	@[ -n "$(PLUGIN)" ] && [ -n "$(CONFIG)" ] || { echo "usage: make plugin-reload PLUGIN=name CONFIG=file (the running daemon's configuration)"; exit 2; }
	@[ -x $(BIN)/spectroauthd ] || $(MAKE) --no-print-directory daemon
	@mkdir -p $(BIN)/plugins
	$(GOBUILD) -o $(BIN)/plugins/$(PLUGIN) ./plugins/$(PLUGIN)
	$(BIN)/spectroauthd plugin reload -config $(CONFIG) $(PLUGIN)

reload: ## have the daemon running CONFIG reload it (as SIGHUP): make reload CONFIG=dev.yaml
	@[ -n "$(CONFIG)" ] || { echo "usage: make reload CONFIG=file (the running daemon's configuration)"; exit 2; }
	$(BIN)/spectroauthd reload -config $(CONFIG)

run: build ## build everything and start the daemon on its embedded development defaults
	$(BIN)/spectroauthd $(RUN_ARGS)

test: lint proto-check test-unit test-node-sdk test-examples test-chart test-release test-image test-e2e fuzz-short ## the whole suite (what CI runs)

# The Go modules built and tested with the daemon: the root module and the
# plugin SDK, a module of its own (sdk/go.mod; the root requires it with a
# replace). Examples and deploy/ tests are modules of their own too, run by
# their targets.
SDK := sdk

lint: ## go vet (root and SDK modules), a Windows build of the daemon, and gofmt; no example may import the daemon's packages
	$(GO) vet ./...
	cd $(SDK) && $(GO) vet ./...
	@# The command-line client (login, the kubectl credential) also runs on developers' machines.
	GOOS=windows $(GO) build -o /dev/null ./host
	@bad=$$(grep -rln --include='*.go' '"github.com/spectroauth/spectroauth/host' examples/ || true); \
	  if [ -n "$$bad" ]; then echo "examples must use the SDK module only, not the daemon's host/ packages:"; echo "$$bad"; exit 1; fi
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test-unit: build ## Go tests with the race detector, root and SDK modules (the e2e package runs in test-e2e)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/host/e2e$$')
	cd $(SDK) && $(GO) test -race -count=1 ./...

# $(NODE_READY) DIR...: succeeds when node and the node_modules of each DIR
# are there; else says why and fails the shell under CI (where .ci/run
# installs them), or returns 1 so that the recipe skips its Node.js part.
NODE_READY = node_ready() { why=; for d in "$$@"; do [ -d "$$d/node_modules" ] || why="$$d/node_modules missing (cd $$d && npm ci --ignore-scripts)"; done; \
  command -v node >/dev/null 2>&1 || why="node not found (install Node.js 20+)"; [ -z "$$why" ] && return 0; \
  if [ -n "$$CI" ]; then echo "$@: FAIL: $$why" >&2; exit 1; fi; echo "$@: SKIP: $$why"; return 1; }; node_ready

test-node-sdk: daemon ## the Node.js plugin SDK (sdk/node): node's test runner, then the conformance suite over the wire
	@$(NODE_READY) sdk/node || exit 0; \
	  echo "cd sdk/node && node --test test/serve.test.js" && (cd sdk/node && node --test test/serve.test.js) && \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  printf '#!/bin/sh\nexec "%s" "%s" "$$@"\n' "$$(command -v node)" "$$(pwd -P)/sdk/node/test/fixture-plugin.js" >"$$tmp/fixture" && \
	  chmod 0755 "$$tmp/fixture" && echo "spectroauthd plugin test: sdk/node/test/fixture-plugin.js" && \
	  $(BIN)/spectroauthd plugin test -plugin "$$tmp/fixture" -cases sdk/node/test/conformance.yaml \
	    -read-path "$$(pwd -P)/sdk/node" -read-path "$$(pwd -P)/proto" | tee "$$tmp/out" && \
	  grep -q ' 0 failed$$' "$$tmp/out"

test-examples: daemon ## the example plugins: their tests, and `spectroauthd plugin test` on the Node.js one
	cd examples/resolver-go && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd examples/resolver-node && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	@$(NODE_READY) sdk/node examples/resolver-node || exit 0; \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  examples/resolver-node/make-wrapper.sh "$$tmp/resolver-node" >/dev/null && \
	  echo "spectroauthd plugin test: examples/resolver-node" && \
	  $(BIN)/spectroauthd plugin test -plugin "$$tmp/resolver-node" -cases examples/resolver-node/conformance.yaml \
	    -read-path "$$(pwd -P)/examples/resolver-node" -read-path "$$(pwd -P)/sdk/node" -read-path "$$(pwd -P)/proto" | tee "$$tmp/out" && \
	  grep -q ' 0 failed$$' "$$tmp/out" && \
	  echo "spectroauthd plugins: examples/resolver-node, sandboxed with its readPaths" && \
	  PLUGIN="$$tmp/resolver-node" PLUGIN_SHA256=$$(sha256sum "$$tmp/resolver-node" | cut -d' ' -f1) REPO=$$(pwd -P) STORAGE_DIR="$$tmp/data" \
	  $(BIN)/spectroauthd plugins -config examples/resolver-node/testdata/daemon.yaml >"$$tmp/plugins" || { cat "$$tmp/plugins"; exit 1; }

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
SOAK_STORAGE     ?= file

soak: build ## refreshes and sign-ins under injected faults (plugin killed and hung, provider down and slow, PostgreSQL restarted, daemon SIGTERM/SIGKILL); SOAK_REFRESHES, SOAK_FAULT_EVERY, SOAK_STORAGE=file|postgres, SOAK_FAULTS
	SPECTROAUTHD=$(CURDIR)/$(BIN)/spectroauthd SOAK_PLUGINS=$(CURDIR)/$(BIN)/plugins SOAK_REFRESHES=$(SOAK_REFRESHES) SOAK_FAULT_EVERY=$(SOAK_FAULT_EVERY) SOAK_STORAGE=$(SOAK_STORAGE) \
		$(GO) test -count=1 -run '^TestSoak$$' -timeout 3h -v ./host/crashtest

bench: build ## Go benchmarks, then the /refresh load benchmark (table on stdout, figures in bench-results.json)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd $(SDK) && $(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./host/loadbench -daemon $(BIN)/spectroauthd -plugins $(BIN)/plugins -out bench-results.json

bench-postgres: build ## the /refresh load benchmark on PostgreSQL storage (figures in bench-results-postgres.json)
	$(GO) run ./host/loadbench -daemon $(BIN)/spectroauthd -plugins $(BIN)/plugins -storage postgres -out bench-results-postgres.json

proto: ## regenerate the Go code of proto/ into sdk/internal/pluginv1 with buf (pinned, no network beyond the module proxy)
	proto/generate.sh

proto-check: ## fail when the committed generated code is stale
	proto/check-generated.sh

DIST := dist
RELEASE_PLATFORMS := linux/amd64 linux/arm64
# The SBOMs' generator, pinned; go install fetches it through the module proxy.
# It reads the modules linked into each platform's daemon from the binary.
CYCLONEDX := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
TOOLS := $(CURDIR)/$(BIN)/tools
# Tarballs whose bytes depend on their contents only.
TAR := tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu

release: ## dist/: static binaries for linux/amd64 and linux/arm64, tarballs, CycloneDX SBOMs and SHA256SUMS
	rm -rf $(DIST) && mkdir -p $(DIST)
	GOBIN=$(TOOLS) CGO_ENABLED=0 $(GO) install $(CYCLONEDX)
	@set -e; for plat in $(RELEASE_PLATFORMS); do \
	  os=$${plat%/*}; arch=$${plat#*/}; dir=$${os}_$${arch}; \
	  echo "release: $$plat into $(DIST)/$$dir"; \
	  GOOS=$$os GOARCH=$$arch $(GOBUILD) -o $(DIST)/$$dir/spectroauthd ./host; \
	  for p in $(PLUGINS); do GOOS=$$os GOARCH=$$arch $(GOBUILD) -o $(DIST)/$$dir/plugins/$$p ./plugins/$$p; done; \
	  $(TAR) -C $(DIST) -cf - $$dir | gzip -n -9 > $(DIST)/spectroauth_$(VERSION)_$$dir.tar.gz; \
	  $(TOOLS)/cyclonedx-gomod bin -json -std -noserial -notimestamp -version $(VERSION) \
	    -output $(DIST)/spectroauth_$(VERSION)_$$dir.cdx.json $(DIST)/$$dir/spectroauthd; \
	done
	cd $(DIST) && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
	@echo "release: $(DIST)/SHA256SUMS"

IMAGE_ARCH := $(shell $(GO) env GOARCH)
IMAGE := $(DIST)/spectroauth_$(VERSION)_image_linux_$(IMAGE_ARCH).tar

image: ## an OCI image FROM scratch with buildah, for IMAGE_ARCH (this machine's): dist/spectroauth_<version>_image_linux_<arch>.tar
	GOOS=linux GOARCH=$(IMAGE_ARCH) $(MAKE) --no-print-directory build BIN=$(BIN)/linux_$(IMAGE_ARCH) VERSION=$(VERSION) COMMIT=$(COMMIT)
	deploy/image/build.sh $(BIN)/linux_$(IMAGE_ARCH) $(VERSION) $(IMAGE_ARCH) $(IMAGE)

# Tests of what ships, each in a Go module of its own under deploy/ so that
# Helm and the Kubernetes API stay out of the daemon's build.
test-release: release ## dist/ checked: checksums, static ELF of each arch, stamped version, SBOM, same bytes from another checkout
	cd deploy/shiptest && $(GO) vet ./... && SPECTROAUTH_DIST=$(CURDIR)/$(DIST) SPECTROAUTH_VERSION=$(VERSION) SPECTROAUTH_COMMIT=$(COMMIT) SPECTROAUTH_SRC=$(CURDIR) \
	  $(GO) test -count=1 -run 'TestRelease' -v ./...

test-image: ## the image run by podman (read-only root): sign in through its development provider, verify the token outside
	@if ! command -v buildah >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then \
	  if [ -n "$$CI" ]; then echo "image: buildah and podman are required under CI (apt-get install buildah podman runc)"; exit 1; fi; \
	  echo "image: SKIP: buildah or podman not found (apt-get install buildah podman runc)"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory image && cd deploy/shiptest && \
	  SPECTROAUTH_IMAGE=$(CURDIR)/$(IMAGE) SPECTROAUTH_VERSION=$(VERSION) SPECTROAUTH_REQUIRE=$${CI:+1} \
	  $(GO) test -count=1 -run 'TestImage' -v ./...

test-chart: daemon ## the Helm chart rendered for every testdata values file, decoded strictly, checked by check-config
	cd deploy/helm/charttest && $(GO) vet ./... && SPECTROAUTHD=$(CURDIR)/$(BIN)/spectroauthd $(GO) test -count=1 ./...

clean:
	rm -rf $(BIN) $(DIST)
