# leaklab: thin aliases over cargo and the loadgen binary.
#   make scenario NAME=leak    run a scenario, write reports/leak/<time>/
#   make list                  list the scenarios
#   make test                  build, then run every test
#   make bench                 throughput and self-cost of the load generator

CARGO   ?= cargo
NAME    ?= leak
ARGS    ?=
LOADGEN := target/release/loadgen

.PHONY: build scenario list test bench schema clippy

build:
	$(CARGO) build --release --workspace --bins

scenario: build
	$(LOADGEN) run $(NAME) $(ARGS)
	@echo "plot: reports/$(NAME)/latest/memory.png   summary: reports/$(NAME)/latest/summary.json"

list: build
	@$(LOADGEN) list

# The end-to-end tests start the real server binary, so it is built first (same profile).
test: build
	$(CARGO) nextest run --release --workspace

bench: build
	$(CARGO) bench -p leaklab-loadgen --bench loadgen

schema: build
	$(LOADGEN) schema > schema/summary.schema.json

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
