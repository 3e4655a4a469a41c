# shellcheck shell=bash
# The release binaries in dist/: dependencies, symbol versions, build-id, stripped, size.

# max_version PREFIX FILE: the highest PREFIX<version> the binary needs (readelf -V's
# version-needs section, the list the dynamic loader checks at start), or nothing.
max_version() {
    readelf -V --wide "$2" | grep -Eo "Name: $1[0-9][0-9.]*" | sed "s/^Name: $1//" | sort -V | tail -n 1
}

# version_le A B: A <= B in version order.
version_le() {
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

# symbols_above PREFIX LIMIT FILE: the imported symbols whose PREFIX version exceeds LIMIT.
symbols_above() {
    local sym ver
    objdump -T "$3" | awk -v p="$1" '$0 ~ p { for (i = 1; i <= NF; i++) if ($i ~ "^\\(?" p) { v = $i; gsub(/[()]/, "", v); print $NF, v } }' |
        while read -r sym ver; do
            version_le "${ver#"$1"}" "$2" || echo "$sym@$ver"
        done
}

# The most bytes a shipped binary may have (issue 10: "dist/ binaries <= 1.5 MB each").
# docs/benchmarks.md, "Binary sizes", says what takes them.
MAX_RELEASE_BYTES=1500000

test_release_binaries() {
    local m=$BIN_DIR/vmwatch-master n=$BIN_DIR/vmwatch-node c=$BIN_DIR/check_vmwatch
    local f needed bad glibc libvirt size
    for f in "$m" "$n" "$c"; do
        check "$(basename "$f") exists in dist/ and is executable" test -x "$f"
    done
    if [ ! -x "$m" ] || [ ! -x "$n" ] || [ ! -x "$c" ]; then
        return 0
    fi

    # The master: fully static, no dynamic section or interpreter at all.
    needed=$(readelf -d "$m" 2>&1 | grep -c '(NEEDED)' || true)
    check_eq "vmwatch-master has no NEEDED entries (readelf -d)" 0 "$needed"
    check "vmwatch-master has no ELF interpreter (static)" bash -c "! readelf -l '$m' | grep -q INTERP"
    check "vmwatch-master carries no libvirt (built without the node feature)" \
        bash -c "! grep -aq 'libvirt.so' '$m'"

    # The node: glibc's libraries and libvirt.so.0 only.
    needed=$(readelf -d "$n" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
    echo "  vmwatch-node NEEDED: $needed"
    bad=
    for f in $needed; do
        case $f in
            libc.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | libm.so.6 | ld-linux-x86-64.so.2 | libvirt.so.0) ;;
            *) bad="$bad $f" ;;
        esac
    done
    check_eq "vmwatch-node needs nothing beyond glibc and libvirt.so.0 (no libzmq, libstdc++, libgcc_s)" "" "${bad# }"
    check_match "vmwatch-node does link libvirt.so.0" '(^| )libvirt\.so\.0( |$)' "$needed"

    glibc=$(max_version GLIBC_ "$n")
    libvirt=$(max_version LIBVIRT_ "$n")
    echo "  vmwatch-node highest versions (readelf -V): GLIBC_$glibc LIBVIRT_$libvirt"
    check "vmwatch-node needs some GLIBC_ version (the check is not vacuous)" test -n "$glibc"
    check "vmwatch-node needs no GLIBC_ above 2.12 (CentOS 6), highest GLIBC_$glibc" version_le "$glibc" 2.12
    check "vmwatch-node needs some LIBVIRT_ version (the check is not vacuous)" test -n "$libvirt"
    check "vmwatch-node needs no LIBVIRT_ above 0.10.2 (CentOS 6), highest LIBVIRT_$libvirt" version_le "$libvirt" 0.10.2
    bad=$(symbols_above GLIBC_ 2.12 "$n"; symbols_above LIBVIRT_ 0.10.2 "$n")
    check_eq "objdump -T: no imported symbol above GLIBC_2.12 / LIBVIRT_0.10.2" "" "$bad"
    check "objdump -T lists versioned imports (the check is not vacuous)" \
        bash -c "objdump -T '$n' | grep -q 'GLIBC_2' && objdump -T '$n' | grep -q LIBVIRT_"
    check "vmwatch-node does not export getauxval (the glibc 2.12 shim stays inside)" \
        bash -c "! objdump -T '$n' | grep -Eq '[[:space:]]\\.text[[:space:]].*getauxval$'"
    check "vmwatch-node does not export __cxa_demangle (src/cxx_demangle.rs stays inside)" \
        bash -c "! objdump -T '$n' | grep -Eq '[[:space:]]\\.text[[:space:]].*__cxa_demangle$'"

    for f in "$m" "$n" "$c"; do
        check "$(basename "$f") has a sha1 build-id" \
            bash -c "readelf -n '$f' | grep -Eq 'Build ID: [0-9a-f]{40}$'"
        check "$(basename "$f") is stripped (no .symtab)" bash -c "! readelf -S --wide '$f' | grep -q '\\.symtab'"
        size=$(stat -c %s "$f")
        echo "  $(basename "$f"): $size bytes"
        check "$(basename "$f") is at most $MAX_RELEASE_BYTES bytes ($size bytes)" \
            test "$size" -le "$MAX_RELEASE_BYTES"
        # -V runs Rust's start-up (which calls getauxval: the shim in the node) and main.
        run_cmd "$f" -V
        check_rc "$(basename "$f") -V runs" 0
        check_out "$(basename "$f") -V prints its name and version" "^$(basename "$f") [0-9]"
    done
}

# The getauxval shim's own unit tests (src/glibc_compat.rs), which the default `cargo test`
# does not compile (they need the glibc212 feature). Native build, in a target dir of its
# own so neither target/debug nor the release builds are touched.
test_glibc_compat() {
    run_cmd env CARGO_TARGET_DIR="$TOP/target/portable-test" \
        cargo test --locked --lib --features glibc212 glibc_compat::
    check_rc "cargo test --features glibc212 glibc_compat" 0
    check_out "... ran the shim's tests (AT_PAGESZ matches sysconf)" 'glibc_compat::tests::page_size_matches_sysconf \.\.\. ok'
    check_out "... and the missing-entry test (0 with ENOENT)" 'glibc_compat::tests::missing_entry_is_zero_with_enoent \.\.\. ok'
}
