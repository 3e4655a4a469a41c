# Packaging targets, included by the top Makefile (see docs/packaging.md).
#
#   make release         portable small binaries in dist/ (zig; cold ~7 min, warm seconds)
#   make rpm             el6 and el7 RPMs of vmwatch-master and vmwatch-node, in dist/
#   make test-packaging  init scripts, units, RPMs, release binaries (installs its tools)
.PHONY: release rpm test-packaging

release:
	bash packaging/release.sh

rpm: release
	bash packaging/rpm/build-rpms.sh dist

# The tests install what they miss (rpm, rpmlint, shellcheck, ...) before using it, so
# tool installation comes first and `make rpm` after it.
test-packaging:
	bash tests/packaging/run.sh
