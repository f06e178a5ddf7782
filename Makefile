# raft-injector — the two commands a newcomer needs:
#   make demo   build everything, start a local one-node cluster, install the webhook in it,
#               and show an etcd cluster formed by injected pods following a scale 3→5→3,
#               a denial and a warning as kubectl prints them
#   make test   every test: unit, HTTP/TLS, end to end through a real kube-apiserver, and on
#               real pods on the local node

SHELL := /bin/bash
RUN_DIR := $(CURDIR)/.run
CONTROLPLANE := tests/controlplane/run.sh
# The end-to-end tests reuse the control plane `make test` starts.
export RAFT_E2E_DIR := $(RUN_DIR)/test-controlplane

.PHONY: all build release lint deny deny-advisories test soak e2e-up e2e-down demo demo-ratis demo-kafka demo-down bench bench-load fuzz clean

all: build

build:
	cargo build --locked --bins

release:
	cargo build --locked --release --bins

# cargo-deny's licence, ban and source checks (deny.toml) run offline; .ci/run installs the
# pinned version (cargo install cargo-deny --version $(CARGO_DENY_VERSION) --locked).
# cargo deny reads the metadata of every crate in Cargo.lock, every platform's included, while
# a build downloads only this platform's: `cargo fetch --locked` brings the rest first, so the
# check assumes nothing about what the cargo cache already holds.
CARGO_DENY_VERSION := 0.20.2
lint: deny
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

deny:
	@command -v cargo-deny >/dev/null || { echo "cargo-deny is missing: cargo install cargo-deny --version $(CARGO_DENY_VERSION) --locked" >&2; exit 1; }
	cargo fetch --locked
	cargo deny --locked --offline --log-level error check licenses bans sources

# RustSec advisories: fetches the advisory database from GitHub, so it runs where that is
# reachable (not on this project's test machines, whose network is closed).
deny-advisories:
	cargo deny --locked check advisories

# The control plane is stopped whatever the tests' outcome.
test: lint build
	$(CONTROLPLANE) up $(RAFT_E2E_DIR)
	status=0; cargo test --locked --all-targets || status=$$?; \
	  $(CONTROLPLANE) down $(RAFT_E2E_DIR); exit $$status

# The membership tests on real pods with 10 scale cycles under a writing client instead of 1
# (about 2 minutes per cycle), on the same kind of local cluster as `make test`.
SOAK_CYCLES ?= 10
soak: build
	$(CONTROLPLANE) up $(RAFT_E2E_DIR)
	status=0; RAFT_SOAK_CYCLES=$(SOAK_CYCLES) timeout 3600 cargo test --locked --test lifecycle_e2e -- --nocapture || status=$$?; \
	  $(CONTROLPLANE) down $(RAFT_E2E_DIR); exit $$status

e2e-up:
	$(CONTROLPLANE) up $(RAFT_E2E_DIR)

e2e-down:
	$(CONTROLPLANE) down $(RAFT_E2E_DIR)

demo: build
	scripts/demo.sh $(RUN_DIR)/demo

# An Apache Ratis group (examples/ratis) formed and resized from the injected env alone.
demo-ratis: build
	scripts/demo-ratis.sh $(RUN_DIR)/demo

# Kafka KRaft controllers (flavor kraft): 3 -> 5 -> 3 with the voters shown by Kafka's own tools.
demo-kafka: build
	scripts/demo-kafka.sh $(RUN_DIR)/demo

demo-down:
	$(CONTROLPLANE) down $(RUN_DIR)/demo

bench:
	cargo bench --locked

# raft-injector against agnhost (the Go webhook of the Kubernetes e2e tests), side by side.
bench-load:
	benches/load/run.sh $(RUN_DIR)/bench-load

# Many more fuzz cases than `make test` runs, on an optimized build; bounded by FUZZ_SECONDS.
FUZZ_CASES ?= 50000
FUZZ_SECONDS ?= 1800
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) timeout $(FUZZ_SECONDS) cargo test --locked --release --test fuzz

clean:
	-$(CONTROLPLANE) down $(RAFT_E2E_DIR)
	-$(CONTROLPLANE) down $(RUN_DIR)/demo
	rm -rf $(RUN_DIR) target
