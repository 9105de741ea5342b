# DiemDanh: school gate attendance. `make run` and `make test` are the two
# commands in the README; both run `setup` first when it is needed.
SHELL := /bin/bash
GO ?= go
MODELS_DIR ?= $(CURDIR)/models
ATTENDANCE_TESTDATA ?= $(abspath $(CURDIR)/../shared/testdata)
export MODELS_DIR ATTENDANCE_TESTDATA
# OpenBLAS: one thread per worker; we parallelise across recognizers.
export OPENBLAS_NUM_THREADS ?= 1
TEST_TIMEOUT ?= 75m
STAMP := bin/.setup-stamp

.PHONY: setup deps models build test test-race run lint bench clean fuzz

# setup is idempotent: packages only if missing, models only if absent or
# wrong, then a build. The stamp lets `make test`/`make run` skip it when
# nothing it depends on changed.
setup: deps models build
	@mkdir -p bin && touch $(STAMP)

$(STAMP): deploy/setup-debian.sh models/SHA256SUMS models/fetch.sh go.mod go.sum
	@$(MAKE) --no-print-directory setup

deps:
	@bash deploy/setup-debian.sh

models:
	@bash models/fetch.sh

build:
	@mkdir -p bin
	@echo "build: bin/edge bin/hub"
	$(GO) build -o bin/edge ./edge
	$(GO) build -o bin/hub ./hub

test: $(STAMP) models build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The race detector on the packages whose tests are not dominated by cgo
# face work (see README, Testing). Run it on its own: -race slows the cgo
# paths (face engine, browser tests) beyond what is useful on 2 cores.
RACE_PKGS := ./edge/store ./edge/gallery ./edge/publish ./edge/pipeline ./edge/capture \
	./hub/store ./hub/ingest ./hub/roster ./hub/attendance ./hub/notify ./hub/auth \
	./hub/templates ./hub/audit ./hub/consent ./hub/backup ./hub/citysync ./deploy/citydb
test-race: $(STAMP)
	$(GO) test -race -count=1 $(RACE_PKGS)

run: $(STAMP) build
	./bin/hub demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks behind the README's Performance section. Each bench command
# prints one JSON object; the gate bench measures the naive baseline in the
# same run. Videos are made once into BENCH_DIR (delete it after changing
# the default embedder: its galleries record the model that made them).
BENCH_DIR ?= /tmp/diemdanh-bench
bench: $(STAMP) build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./models/gatekit/
	@mkdir -p $(BENCH_DIR)
	@[ -f $(BENCH_DIR)/f.avi ] || ./bin/edge simulate --photos $(ATTENDANCE_TESTDATA)/faces \
	  --seed 1 --out $(BENCH_DIR)/f.avi --truth $(BENCH_DIR)/f.truth.json --gallery-out $(BENCH_DIR)/f.gallery.json
	@[ -f $(BENCH_DIR)/a.avi ] || ./bin/edge simulate --photos $(ATTENDANCE_TESTDATA)/faces,$(ATTENDANCE_TESTDATA)/asian/kpop \
	  --seed 1 --out $(BENCH_DIR)/a.avi --truth $(BENCH_DIR)/a.truth.json --gallery-out $(BENCH_DIR)/a.gallery.json
	@[ -f $(BENCH_DIR)/c.avi ] || ./bin/edge simulate --photos $(ATTENDANCE_TESTDATA)/asian/casia-facev5 \
	  --seed 1 --out $(BENCH_DIR)/c.avi --truth $(BENCH_DIR)/c.truth.json --gallery-out $(BENCH_DIR)/c.gallery.json
	./bin/edge bench --video $(BENCH_DIR)/f.avi --truth $(BENCH_DIR)/f.truth.json --gallery $(BENCH_DIR)/f.gallery.json --json
	./bin/edge bench --video $(BENCH_DIR)/a.avi --truth $(BENCH_DIR)/a.truth.json --gallery $(BENCH_DIR)/a.gallery.json --json
	./bin/edge bench --video $(BENCH_DIR)/c.avi --truth $(BENCH_DIR)/c.truth.json --gallery $(BENCH_DIR)/c.gallery.json --json
	./bin/hub bench-ingest --events 20000 --publishers 4 --external --json
	./bin/hub bench-enrol --json
	./bin/hub bench-live --clients 500 --json
	./bin/hub bench-sync --rows 100000 --json

# Every fuzz target, FUZZTIME each (seed corpora live in each package's testdata/).
FUZZTIME ?= 30s
FUZZ_TARGETS := ./models/gatekit:FuzzDecodeEvent ./models/gatekit:FuzzDecodeGallery \
	./hub/ingest:FuzzCheckEvent ./hub/roster:FuzzImportPupilsCSV ./hub/enrol:FuzzParseRoster \
	./hub/notify:FuzzVerify ./hub/web:FuzzSafeNext
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn in $$pkg ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; done

clean:
	rm -rf bin
