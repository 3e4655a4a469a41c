# vmwatch build, test and demo entry points.
#
#   make            build both daemons (debug)
#   make test       install what is missing, start libvirtd, run every test
#   make demo       install what is missing, run master + node against two tiny guests
#   make bench      benchmarks (figures go in docs/benchmarks.md)
#   make fuzz       each cargo-fuzz target for FUZZ_SECONDS, fixed seed (fuzz/README.md)
#   make release    portable small binaries (packaging/packaging.mk)
#   make rpm        el6 and el7 RPMs of both packages (packaging/packaging.mk)

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build setup test test-unit test-e2e demo bench bench-quick lint clean fuzz

all: build

build:
	$(CARGO) build --bins

setup:
	bash tests/support/setup-host.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 tests/support/import-circles.py --self-test
	python3 tests/support/import-circles.py

test-unit:
	$(CARGO) test --lib --bins

# Everything: unit, integration and end-to-end on the real libvirtd, then packaging.
test: setup lint
	$(CARGO) build --bins --tests
	VMWATCH_E2E=1 $(CARGO) test -- --test-threads=1
	$(MAKE) bench-quick
	if [ -f packaging/packaging.mk ]; then $(MAKE) test-packaging; fi

demo: setup
	$(CARGO) build --bins
	bash tests/support/demo.sh

bench: setup
	$(CARGO) build --release --bins --example loadgen
	$(CARGO) bench --bench vmwatch
	@echo; bash tests/support/binary-sizes.sh || echo "(the shipped binaries are made by make release: cold ~10 min, not part of make bench)"

# The bench's smoke run (part of `make test`): every section, small counts,
# debug binaries; proves the bench works, its figures mean nothing.
bench-quick:
	$(CARGO) build --bins --example loadgen
	VMWATCH_BENCH_QUICK=1 $(CARGO) test --bench vmwatch

# Fuzzing on the stable toolchain: cargo-fuzz needs nightly flags, which
# RUSTC_BOOTSTRAP=1 unlocks; no sanitizer by default (the code is safe Rust;
# FUZZ_SANITIZER=address works too, about 3x slower). New corpus entries go
# to fuzz/target/corpus, crashes to fuzz/artifacts; fails if any target finds
# one. FUZZ_SKIP=canonical,... skips known invariant violations (not panics).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decode_signed decode_raw config statefile panel_line
FUZZ_SANITIZER ?= none
FUZZ_SKIP ?=

fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	failed=; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$t fuzz/artifacts/$$t; \
	  echo "== fuzz $$t: $(FUZZ_SECONDS) s, seed 1"; \
	  VMWATCH_FUZZ_SKIP=$(FUZZ_SKIP) RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s $(FUZZ_SANITIZER) $$t \
	    fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
	    -seed=1 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in$$failed (see fuzz/artifacts)"; exit 1; fi

clean:
	$(CARGO) clean
	rm -rf dist

-include packaging/packaging.mk
