# One entry point for building, testing, fuzzing and benchmarking pilot-workers.
# `make help` lists the targets.

CARGO        ?= cargo
FUZZ_SECONDS ?= 30
# Targets proving pilot-core needs neither std nor an OS: wasm32 for Workers, and a bare-metal
# target that has no std at all (a std dependency cannot build there).
WASM_TARGET  := wasm32-unknown-unknown
NOSTD_TARGET := thumbv7em-none-eabi
FUZZ_TARGETS := addr packet frame fragment pils_open replay replay_epochs services registry

.PHONY: help setup test fmt-check clippy unit wasm-core nostd-core demo fuzz bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install the toolchain pieces the tests need (idempotent)
	rustup component add rustfmt clippy
	rustup target add $(WASM_TARGET) $(NOSTD_TARGET)

test: setup fmt-check clippy unit wasm-core nostd-core ## everything CI checks (installs what it needs first)
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

demo: ## in-process demo: two pilot-core peers exchange keys and encrypted packets
	$(CARGO) run --quiet -p pilot-core --example tunnel

fuzz: ## run every fuzz target for FUZZ_SECONDS each (needs nightly; installs cargo-fuzz)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd pilot-core/fuzz && for t in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

bench: ## criterion benchmarks of pilot-core (medians in target/criterion)
	$(CARGO) bench -p pilot-core
