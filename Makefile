# The two commands a fresh machine needs (see README.md):
#   make demo   runs the main job end to end on the local stack
#   make test   runs every check CI runs (starts and stops the stack itself)
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 30s

.PHONY: all build demo test stack stack-down stack-reset lint fuzz bench

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

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
