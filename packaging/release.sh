#!/usr/bin/env bash
# `make release`: the portable, small release binaries, in dist/.
#
#   dist/vmwatch-master  fully static (musl): no NEEDED entries, runs on any x86_64 Linux
#   dist/check_vmwatch   the monitoring plugin, fully static (musl) like the master
#   dist/vmwatch-node    glibc >= 2.12 and libvirt.so.0 only (CentOS 6 onwards); libzmq and
#                        the C++ runtime linked in
#
# Both are built with zig as the C/C++ compiler and linker (cargo-zigbuild): zig ships musl
# and libc++ and can target an old glibc's symbol versions (x86_64-unknown-linux-gnu.2.12),
# which Debian's gcc cannot. Rust std needs getauxval (glibc 2.16): the glibc212 feature
# compiles our shim, src/glibc_compat.rs. The release profile (Cargo.toml) gives opt-level
# "s", LTO, panic=abort and strip; the build-id and zig's small mode come from the linker
# flags below. Each shipped binary must stay at most 1,500,000 bytes (issue 10, held by
# tests/packaging/t-release.sh); what takes them and what each step below saves is in
# docs/benchmarks.md, "Binary sizes":
#   - std is built from source (cargo's build-std, see below) without its backtrace
#     symbolizer: 230-260 KB less per binary;
#   - the slim-cxxabi feature leaves out libc++abi's C++ demangler (src/cxx_demangle.rs):
#     140-170 KB less for the master and the node;
#   - zig builds the libraries it links in for size (-Os at link time): 55-65 KB less for
#     the master and the node.
# The master and check_vmwatch share their feature set, so the library is built once for
# both.
#
# Everything lives under target/: the zig toolchain (a Python venv from PyPI), its cache
# and the cargo target dir, so the development build in target/debug is never locked or
# rebuilt. From a fresh clone (2 cores) it took 622 s: zig builds musl, glibc stubs and
# libc++ for each target, cargo every crate twice; after a source change ~40 s.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# Pinned: a zig or cargo-zigbuild upgrade changes the binaries; change these on purpose.
ZIGBUILD_VERSION=0.24.0
ZIGLANG_VERSION=0.17.1

venv=$top/target/zigvenv
log() { printf 'release: %s\n' "$*" >&2; }

# The node links libvirt, found with pkg-config.
bash packaging/ensure-debs.sh pkg-config libvirt-dev
if ! "$venv/bin/python" -c 'import ziglang' 2>/dev/null || [ ! -x "$venv/bin/cargo-zigbuild" ]; then
    log "installing cargo-zigbuild $ZIGBUILD_VERSION and ziglang $ZIGLANG_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$top/target"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    log "adding the Rust target x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl
fi
# build-std compiles std from the toolchain's own sources.
if ! rustup component list --installed | grep -q '^rust-src'; then
    log "adding the rust-src component (std's sources, for build-std)"
    rustup component add rust-src
fi

# The venv's python has ziglang, which is how cargo-zigbuild finds zig.
export PATH=$venv/bin:$PATH
export CARGO_TARGET_DIR=$top/target/portable
# zig's own cache (libc++, musl, glibc stubs: ~120 MB) stays inside target/ as well.
export XDG_CACHE_HOME=$top/target/portable/xdg-cache
# Changing these flags rebuilds everything, the vendored libzmq included. `-Os` reaches zig
# at link time: zig builds the libraries it links in (musl, libc++, libc++abi, libunwind,
# compiler-rt) in its ReleaseSmall mode instead of ReleaseFast (what it picks when the
# link line has no -O).
export RUSTFLAGS="-C link-arg=-Wl,--build-id=sha1 -C link-arg=-Os"
# std from source, with the release profile (LTO, panic=abort) and without symbolizing
# backtraces: the prebuilt std carries a DWARF symbolizer (gimli, addr2line, miniz_oxide,
# about 165 KB of code) that only the default panic hook's RUST_BACKTRACE output uses, and
# that finds no names in a stripped binary anyway (it printed `<unknown>`). With
# backtrace-trace-only, RUST_BACKTRACE=1 or full prints the frames' addresses; panic
# messages are unchanged (the daemons log theirs through their own hook). build-std is a
# cargo -Z option: on the stable toolchain RUSTC_BOOTSTRAP=1 allows it, as `make fuzz`
# does for cargo-fuzz. Without these two lines the build still works, about 240 KB larger
# per binary (and over the size limit).
export RUSTC_BOOTSTRAP=1
build_std=("-Zbuild-std=std,panic_abort" "-Zbuild-std-features=backtrace,backtrace-trace-only")

start=$SECONDS
log "vmwatch-master: x86_64-unknown-linux-musl, without the node feature (no libvirt)"
cargo zigbuild --release --locked --target x86_64-unknown-linux-musl \
    --no-default-features --features slim-cxxabi --bin vmwatch-master "${build_std[@]}"
log "check_vmwatch: x86_64-unknown-linux-musl, like the master (reads files only)"
cargo zigbuild --release --locked --target x86_64-unknown-linux-musl \
    --no-default-features --features slim-cxxabi --bin check_vmwatch "${build_std[@]}"
log "vmwatch-node: x86_64-unknown-linux-gnu.2.12 (glibc 2.12 symbol versions)"
cargo zigbuild --release --locked --target x86_64-unknown-linux-gnu.2.12 \
    --features glibc212,slim-cxxabi --bin vmwatch-node "${build_std[@]}"

mkdir -p dist
install -m 0755 "$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/vmwatch-master" dist/vmwatch-master
install -m 0755 "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/vmwatch-node" dist/vmwatch-node
install -m 0755 "$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/check_vmwatch" dist/check_vmwatch
log "done in $((SECONDS - start)) s: $(stat -c '%n %s bytes' dist/vmwatch-master dist/vmwatch-node dist/check_vmwatch | paste -sd, -)"
