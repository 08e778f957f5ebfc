# The two commands a fresh machine needs (see README.md):
#   make demo   runs the main job end to end on the local stack
#   make test   runs every check CI runs (starts and stops the stack itself)
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 30s

.PHONY: all build demo test stack stack-down stack-reset lint fuzz bench bench-go bench-big faults kill-trials terraform-check

all: build

build:
	$(GO) build -o bin/rotator ./cmd/rotator

demo:
	scripts/demo

test:
	scripts/test

stack:
	scripts/stack up

stack-down:
	scripts/stack down

stack-reset:
	scripts/stack reset

# fuzz runs every fuzz target for FUZZTIME each (the seed corpora also run in `make test`).
fuzz:
	scripts/fuzz $(FUZZTIME)

# bench starts the local stack and measures every figure of the
# performance issue in one run (bench/suite): rotator against a bare loop
# of the irreducible calls and the official client v4.0.0, KMS -> HSM,
# a KMS rate cap, a latency-bound run at several concurrencies, ledger
# writes and bytes (embedded and DynamoDB), and objects/s and peak RSS at
# 1k, 10k and 100k objects. It prints the table, writes JSON and an SVG
# plot to bench/results/ (about 14 minutes on a quiet machine of 2 cores;
# 27 shared with four other test runs at a load of 16-31). BENCH_ARGS passes
# knobs, e.g. BENCH_ARGS='-scale 1000,10000,1000000' or '-only rewrap,scale'.
BENCH_ARGS ?=
bench:
	scripts/stack up
	. .stack/env && cd bench && $(GO) run ./suite $(BENCH_ARGS)

# bench-go runs the in-process Go benchmarks (gcmstream, rewrap, ledger, ...).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# bench-big re-encrypts one BIG_SIZE object through the local stack with
# rotator and with the official client, and prints time, throughput and
# peak RSS of each (bench/bigobject).
BIG_SIZE ?= 4GiB
bench-big:
	scripts/stack up
	. .stack/env && cd bench && $(GO) run ./bigobject -size $(BIG_SIZE)

# faults runs the whole fault matrix: every call of every scenario with
# every kind of fault (make test runs a sample); see docs/reliability.md.
faults:
	scripts/stack up
	. .stack/env && ROTATOR_INTEGRATION=require ROTATOR_FAULTS=all $(GO) test -count=1 -timeout 4h -run TestFaultMatrix ./pipeline/

# kill-trials kills real rotator processes at random moments, KILL_TRIALS
# times per mode, and checks that resume finishes every object exactly once;
# the fault trials do the same with processes whose every call may fail or
# lose its response (make test runs one trial of each per mode).
KILL_TRIALS ?= 20
kill-trials:
	scripts/stack up
	. .stack/env && ROTATOR_INTEGRATION=require ROTATOR_KILL_TRIALS=$(KILL_TRIALS) $(GO) test -count=1 -timeout 2h -run 'TestCLIKillTrials|TestCLIFaultTrials' ./cmd/rotator/

# terraform-check formats-checks terraform/ with OpenTofu (built once from
# the Go module proxy) and runs the module's Go test (references, the policy
# against rotator iam-policy, the table against ledger/SCHEMA.md).
terraform-check:
	scripts/tofu check
	$(GO) test -count=1 ./terraform/
