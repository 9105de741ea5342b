# DiemDanh: school gate attendance. `make run` and `make test` are the two
# commands in the README; both run `setup` first when it is needed.
SHELL := /bin/bash
GO ?= go
MODELS_DIR ?= $(CURDIR)/models
ATTENDANCE_TESTDATA ?= $(abspath $(CURDIR)/../shared/testdata)
# Downloads other than the models are cached outside the clone: the demo
# pupils' photos (models/fetch-demo.sh) go to $(DEMO_PHOTOS_DIR), where
# bin/hub demo looks for them too.
DIEMDANH_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/diemdanh
DEMO_PHOTOS_DIR ?= $(DIEMDANH_CACHE)/demo-photos
export MODELS_DIR ATTENDANCE_TESTDATA DIEMDANH_CACHE DEMO_PHOTOS_DIR
# OpenBLAS: one thread per worker; we parallelise across recognizers.
export OPENBLAS_NUM_THREADS ?= 1
TEST_TIMEOUT ?= 75m
STAMP := bin/.setup-stamp

.PHONY: setup prepare deps models demo-photos build test test-race run lint bench clean fuzz

# setup is idempotent: packages only if missing, models and demo photos
# only if absent or wrong, then a build. `prepare` is setup without the
# build; its stamp lets `make test`/`make run` skip it when nothing it
# depends on changed, and they build once themselves.
setup: prepare build

prepare: deps models demo-photos
	@mkdir -p bin && touch $(STAMP)

$(STAMP): deploy/setup-debian.sh models/SHA256SUMS models/fetch.sh models/DEMO_PHOTOS.SHA256SUMS models/fetch-demo.sh go.mod go.sum
	@$(MAKE) --no-print-directory prepare

deps:
	@bash deploy/setup-debian.sh

models:
	@bash models/fetch.sh

# The demo's photos: without them (offline) `make run` still starts the hub
# and the gate and says what is missing (fetch-demo.sh exits 1); a checksum
# mismatch (exit 2) is a hard error.
demo-photos:
	@bash models/fetch-demo.sh || [ $$? -eq 1 ]

build:
	@mkdir -p bin
	@echo "build: bin/edge bin/hub"
	$(GO) build -o bin/edge ./edge
	$(GO) build -o bin/hub ./hub

test: $(STAMP) models build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The race detector on every package that does not link the cgo face engine
# (deploy/archcheck keeps them so: the pure models packages, every hub package
# but hub/enrol, hub/app and the main, and the gate's store, gallery and
# publisher), plus edge/pipeline and edge/capture, which link OpenCV but whose
# tests stay quick under -race. Run it on its own. hub/enrol and the edge tools
# are left out: -race slows their cgo face work beyond what is useful on 2 cores.
RACE_PKGS := ./models/conf ./models/errkind ./models/procstat ./models/imagecheck ./models/match ./models/wire \
	./edge/store ./edge/gallery ./edge/publish ./edge/pipeline ./edge/capture \
	./hub/api ./hub/store/... ./hub/ingest ./hub/roster ./hub/attendance ./hub/notify ./hub/auth \
	./hub/facetemplates ./hub/audit ./hub/consent ./hub/backup ./hub/citysync ./hub/broker \
	./hub/gallerysrv ./hub/web ./hub/breach ./hub/loginlock ./deploy/citydb
test-race: $(STAMP)
	$(GO) test -race -count=1 $(RACE_PKGS)

# The demo photos are tried again here (a quick check when present), so a
# first run offline picks them up on a later `make run`.
run: $(STAMP) build demo-photos
	./bin/hub demo

lint: $(STAMP)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks behind deploy/PERFORMANCE.md. Each bench command prints one
# JSON object. The gate bench runs the suite of school days (every shared
# set, a school-size gallery): the gate over every day with each decision
# rule, the naive baseline and the peer (face_recognition's rule) over day 1,
# in one run. `edge simulate --suite` generates the suite into BENCH_DIR/suite
# once and reuses it while its sources and options are the same (delete it
# after changing the default embedder: its galleries record the model that
# made them). BENCH_DECISION lists the decision rules the gate runs with,
# each over every day; one rule with the baseline and the peer takes 20 min on
# 2 idle cores, each more rule about 10 min (BENCH_DECISION=votes,mean
# compares the two rules in one run).
BENCH_DIR ?= /tmp/diemdanh-bench
BENCH_DECISION ?= votes
bench: $(STAMP) build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./models/faceengine/ ./models/match/
	@mkdir -p $(BENCH_DIR)
	./bin/edge simulate --suite $(BENCH_DIR)/suite
	./bin/edge bench --suite $(BENCH_DIR)/suite/suite.json --decision $(BENCH_DECISION) --baseline --peer --json
	./bin/hub bench-ingest --events 20000 --publishers 4 --external --json
	./bin/hub bench-enrol --json
	./bin/hub bench-live --clients 500 --json
	./bin/hub bench-sync --rows 100000 --json

# Every fuzz target, FUZZTIME each (seed corpora live in each package's testdata/).
FUZZTIME ?= 30s
FUZZ_TARGETS := ./models/wire:FuzzDecodeEvent ./models/wire:FuzzDecodeGallery \
	./models/wire:FuzzDecodeStatus ./models/wire:FuzzDecodeHeartbeat ./models/wire:FuzzDecodeGalleryAnnounce ./models/wire:FuzzDecodeUnrecognised \
	./hub/ingest:FuzzCheckEvent ./hub/roster:FuzzImportPupilsCSV ./hub/enrol:FuzzParseRoster \
	./hub/notify:FuzzVerify ./hub/web:FuzzSafeNext
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn in $$pkg ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; done

clean:
	rm -rf bin
