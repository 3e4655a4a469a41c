# vmwatch build, test and demo entry points.
#
#   make            build both daemons (debug)
#   make test       install what is missing, start libvirtd, run every test
#   make demo       install what is missing, run master + node against two tiny guests
#   make bench      benchmarks (figures go in docs/benchmarks.md)
#   make release    portable small binaries (packaging/packaging.mk)
#   make rpm        el6 and el7 RPMs of both packages (packaging/packaging.mk)

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build setup test test-unit test-e2e demo bench lint clean

all: build

build:
	$(CARGO) build --bins

setup:
	bash tests/support/setup-host.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test-unit:
	$(CARGO) test --lib --bins

# Everything: unit, integration and end-to-end on the real libvirtd, then packaging.
test: setup
	$(CARGO) build --bins --tests
	VMWATCH_E2E=1 $(CARGO) test -- --test-threads=1
	if [ -f packaging/packaging.mk ]; then $(MAKE) test-packaging; fi

demo: setup
	$(CARGO) build --bins
	bash tests/support/demo.sh

bench: setup
	$(CARGO) build --release --bins
	$(CARGO) bench --bench vmwatch

clean:
	$(CARGO) clean
	rm -rf dist

-include packaging/packaging.mk
