# One entry point for building, testing, fuzzing and benchmarking pilot-workers.
# `make help` lists the targets.

CARGO        ?= cargo
FUZZ_SECONDS ?= 30
# Targets proving pilot-core needs neither std nor an OS: wasm32 for Workers, and a bare-metal
# target that has no std at all (a std dependency cannot build there).
WASM_TARGET  := wasm32-unknown-unknown
NOSTD_TARGET := thumbv7em-none-eabi
FUZZ_TARGETS := addr packet frame fragment pils_open replay replay_epochs services services_sm registry
# pilot-wasm: the wasm-bindgen CLI must match the crate's pinned wasm-bindgen exactly; wasm-opt
# comes from npm binaryen (Debian's binaryen 108 produces broken modules).
WASM_BINDGEN_VERSION := 0.2.130
# worker-build drives wasm-bindgen and wasm-opt for the workers-rs Worker.
WORKER_BUILD_VERSION := 0.8.7
WASM_PKG     := pilot-wasm
WASM_DIST    := $(WASM_PKG)/dist
WASM_OUT     := $(WASM_PKG)/test/out
WASM_RAW     := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/wasm-release/pilot_wasm.wasm
WASM_OPT     := $(WASM_PKG)/node_modules/.bin/wasm-opt
# The features rustc enables by default for wasm32-unknown-unknown; wasm-opt must accept them.
# The TypeScript face of the Worker peer: the npm package and its example Worker.
WORKER_NPM     := worker-shim/npm
WORKER_TS_EXAMPLE := worker-shim/examples/ts-worker
WORKER_BIN_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target)/debug)
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue

.PHONY: help setup setup-wasm test fmt-check clippy unit wasm-core nostd-core demo demo-core fuzz \
	bench wasm size test-wasm bench-wasm bench-relay relay setup-e2e test-e2e bench-e2e \
	setup-worker-ts worker-npm test-worker-ts

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

setup: setup-wasm setup-worker-ts ## install the toolchain pieces the tests need (idempotent)
	rustup component add rustfmt clippy
	rustup target add $(WASM_TARGET) $(NOSTD_TARGET)

setup-wasm: ## wasm32 target, the pinned wasm-bindgen CLI, npm ci in pilot-wasm
	rustup target add $(WASM_TARGET)
	@if wasm-bindgen --version 2>/dev/null | grep -qx 'wasm-bindgen $(WASM_BINDGEN_VERSION)'; then \
		echo "wasm-bindgen $(WASM_BINDGEN_VERSION) present"; \
	else \
		$(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi
	cd $(WASM_PKG) && npm ci --no-audit --no-fund

test: setup fmt-check clippy unit wasm-core nostd-core worker-check test-wasm test-worker-ts worker-smoke-tcp test-e2e ## everything CI checks (installs what it needs first)
	@echo "make test: all checks passed"

fmt-check: ## rustfmt, no changes allowed
	$(CARGO) fmt --all --check

clippy: ## lints, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: ## unit, property, scenario and conformance-vector tests
	$(CARGO) test --workspace

wasm-core: ## pilot-core for wasm32, without default features
	$(CARGO) build -p pilot-core --no-default-features --target $(WASM_TARGET)

nostd-core: ## pilot-core for a target that has no std at all
	$(CARGO) build -p pilot-core --no-default-features --target $(NOSTD_TARGET)

demo: setup-e2e ## the Worker under wrangler dev, the relay, a registry and a native peer, narrated
	$(CARGO) run --quiet -p conformance --bin pilot-demo

demo-core: ## in-process demo: two pilot-core peers exchange keys and encrypted packets
	$(CARGO) run -p pilot-core --example tunnel

setup-e2e: setup-worker ## what the Worker end to end needs: worker-build, npm ci in worker-shim, the Worker
	@if worker-build --version 2>/dev/null | grep -q '$(WORKER_BUILD_VERSION)'; then \
		echo "worker-build $(WORKER_BUILD_VERSION) present"; \
	else \
		$(CARGO) install --locked worker-build --version $(WORKER_BUILD_VERSION); \
	fi
	$(MAKE) worker

test-e2e: setup-e2e ## the Worker scenario: registry, relay on 127.0.0.2, native peer, wrangler dev
	$(CARGO) test -p conformance --test worker_e2e -- --ignored --nocapture

bench-e2e: setup-e2e ## 10 MiB Worker -> peer through the relay, echo RTT p50/p99, Worker wasm size
	$(CARGO) run --release -p conformance --bin pilot-demo -- --bench
	@raw=$$(wc -c < $(WORKER_WASM)); gz=$$(gzip -9 -c $(WORKER_WASM) | wc -c); \
	echo "Worker wasm $(WORKER_WASM): $$raw bytes raw, $$gz bytes gzip -9"

fuzz: ## run every fuzz target for FUZZ_SECONDS each (installs nightly and cargo-fuzz if missing)
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd pilot-core/fuzz && for t in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

bench: ## criterion benchmarks of pilot-core (medians in target/criterion)
	$(CARGO) bench -p pilot-core

bench-relay: ## relay throughput, added latency and memory per idle session (loopback)
	$(CARGO) bench -p pilot-relay --bench relay_bench

relay: ## run the WebSocket <-> UDP relay locally (open mode, loopback destinations allowed)
	$(CARGO) run -p pilot-relay -- --open --listen 127.0.0.1:8787 --udp-bind-ip 127.0.0.1 --allow-dest 127.0.0.0/8

wasm: ## build the npm package into pilot-wasm/dist (cargo, wasm-bindgen, wasm-opt -Oz)
	$(CARGO) build -p pilot-wasm --target $(WASM_TARGET) --profile wasm-release
	rm -rf $(WASM_DIST)
	wasm-bindgen --target web --weak-refs --out-dir $(WASM_DIST) --out-name pilot_wasm $(WASM_RAW)
	$(WASM_OPT) -Oz $(WASM_FEATURES) --strip-debug --strip-producers \
		$(WASM_DIST)/pilot_wasm_bg.wasm -o $(WASM_DIST)/pilot_wasm_bg.wasm
	cp $(WASM_PKG)/js/*.js $(WASM_PKG)/js/*.d.ts $(WASM_DIST)/

size: wasm ## raw and gzipped bytes of the optimised .wasm
	@raw=$$(wc -c < $(WASM_DIST)/pilot_wasm_bg.wasm); \
	gz=$$(gzip -9 -c $(WASM_DIST)/pilot_wasm_bg.wasm | wc -c); \
	echo "pilot_wasm_bg.wasm: $$raw bytes raw, $$gz bytes gzip -9"

test-wasm: wasm ## Node tests (vectors, native transcripts, two Nodes) and the Worker test in workerd
	mkdir -p $(WASM_OUT)
	$(CARGO) run --quiet -p pilot-wasm --example transcript > $(WASM_OUT)/transcript.json
	$(CARGO) run --quiet -p pilot-wasm --example node_transcript > $(WASM_OUT)/node-transcript.json
	cd $(WASM_PKG) && PILOT_TRANSCRIPT=test/out/transcript.json \
		PILOT_NODE_TRANSCRIPT=test/out/node-transcript.json node --test test/*.test.mjs
	cd $(WASM_PKG) && WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
		node --test test/worker/*.test.mjs

bench-wasm: wasm ## wasm (Node) vs native criterion: PILA handshake and PILS 1 KiB seal/open
	$(CARGO) bench -p pilot-core --bench crypto
	node $(WASM_PKG)/bench/bench.mjs $(or $(CARGO_TARGET_DIR),target)/criterion

# worker-shim: the Worker (workers-rs) built with worker-build, offline: the pinned
# wasm-bindgen CLI, and wasm-opt / esbuild from worker-shim's npm devDependencies.
WORKER_DIR  := worker-shim
WORKER_WASM := $(WORKER_DIR)/build/index_bg.wasm

.PHONY: worker worker-size worker-smoke worker-smoke-tcp worker-attack setup-worker worker-check

worker-check: ## lints of the Worker crate for wasm32 (its Durable Object code exists only there)
	$(CARGO) clippy -p pilot-worker --target $(WASM_TARGET) -- -D warnings

setup-worker: setup-wasm ## npm ci in worker-shim (wrangler, esbuild, binaryen)
	cd $(WORKER_DIR) && npm ci --no-audit --no-fund

worker: ## build the Worker into worker-shim/build (worker-build --release)
	@command -v worker-build >/dev/null || $(CARGO) install --locked worker-build --version $(WORKER_BUILD_VERSION)
	cd $(WORKER_DIR) && WASM_BINDGEN_BIN="$$(command -v wasm-bindgen)" \
		WASM_OPT_BIN="$$PWD/node_modules/.bin/wasm-opt" \
		ESBUILD_BIN="$$PWD/node_modules/.bin/esbuild" worker-build --release

worker-size: worker ## raw and gzipped bytes of the Worker's wasm
	@raw=$$(wc -c < $(WORKER_WASM)); \
	gz=$$(gzip -9 -c $(WORKER_WASM) | wc -c); \
	echo "worker index_bg.wasm: $$raw bytes raw, $$gz bytes gzip -9"

worker-smoke: worker ## loopback smoke run: registry, relay, native peer, the Worker in wrangler dev
	bash $(WORKER_DIR)/scripts/smoke.sh

worker-attack: setup-worker worker ## loopback abuse run of the Worker: bad API calls, forged frames, a flood, restarts
	bash $(WORKER_DIR)/scripts/attack.sh

worker-smoke-tcp: setup-worker worker ## loopback smoke run of PILOT_TRANSPORT=tcp: registry, a peer with --tcp-listen, the Worker
	bash $(WORKER_DIR)/scripts/smoke-tcp.sh

setup-worker-ts: ## npm ci for the Worker's npm package and its TypeScript example
	cd $(WORKER_NPM) && npm ci --no-audit --no-fund
	cd $(WORKER_TS_EXAMPLE) && npm ci --no-audit --no-fund

worker-npm: setup-worker setup-worker-ts worker ## build the npm package @pilot-workers/worker (client + PilotNode) into worker-shim/npm/dist
	cd $(WORKER_NPM) && npm run build

test-worker-ts: worker-npm ## TS client vs a fake DO and a real PilotNode, the TS example, wrangler dry runs (workerd, loopback)
	$(CARGO) build --quiet -p conformance --bin pilot-registry --bin pilot-peer -p pilot-relay --bin pilot-relay
	cd $(WORKER_NPM) && npm run --silent typecheck
	cd $(WORKER_TS_EXAMPLE) && npm run --silent typecheck
	cd $(WORKER_NPM) && PILOT_BIN_DIR=$(WORKER_BIN_DIR) node --test test/*.test.mjs
