#!/usr/bin/env python3
"""What takes the bytes of a release binary: code by origin, and the ELF sections.

    python3 tests/support/size-breakdown.py BINARY...

BINARY must keep its symbols: build it the way packaging/release.sh does, with
CARGO_PROFILE_RELEASE_STRIP=false (docs/benchmarks.md, "Binary sizes", has the commands).
The shipped binaries are stripped, so the breakdown is of the same link before stripping.

zig's linker takes no map file (-Map is an "unsupported linker arg"), and cargo-bloat
drives a cargo build of its own rather than the zig one, so this reads the symbol table
(nm -S) instead: every function symbol, one per address, is put in a group by its name.
Rust symbols (legacy `_ZN...17h<hash>E` or v0 `_R...`) go by their crate; C++ by namespace
(libzmq is `zmq::`, libc++ is `std::__1::`); the rest is C (musl or glibc's static parts,
compiler-rt). Generic std code instantiated for our types counts as std, as in cargo-bloat.
Prints markdown tables. Needs binutils (nm, c++filt, readelf) only.
"""

import collections
import re
import subprocess
import sys

RUST_LEGACY = re.compile(r"^_ZN.*17h[0-9a-f]{16}E$")
BACKTRACE = ("gimli", "addr2line", "miniz_oxide", "rustc_demangle", "backtrace_rs", "object::")
STD = {"std", "core", "alloc", "hashbrown", "memchr", "std_detect", "panic_abort",
       "panic_unwind", "unwind", "adler2", "compiler_builtins", "__rustc", "rustc_std_workspace_core"}
TIME = {"time", "time_core", "deranged", "powerfmt", "num_conv", "itoa", "num_threads"}
OURS = {"vmwatch", "vmwatch_master", "vmwatch_node", "check_vmwatch"}
CRYPTO = {"sha2", "hmac", "digest", "block_buffer", "crypto_common", "generic_array",
          "cpufeatures", "subtle"}


def rust_group(demangled):
    if any(b in demangled for b in BACKTRACE):
        return "Rust std: backtrace symbolizer (gimli, addr2line, miniz_oxide, demangler)"
    path = re.sub(r"^[<&*\s]*((dyn|mut|const|impl) )*", "", demangled)
    crate = re.sub(r"\[[0-9a-f]+\]$", "", re.split(r"::|<| |>|;", path)[0])
    if crate in OURS:
        return "Rust: vmwatch (our code, with what LTO inlined into it)"
    if crate in TIME:
        return "Rust: time and its helpers (syslog crate's timestamps)"
    if crate in CRYPTO:
        return "Rust: sha2, hmac"
    if crate in ("zmq", "zmq_sys", "virt", "virt_sys"):
        return "Rust: zmq and virt bindings"
    if crate in ("getopts", "unicode_width", "syslog", "log", "hostname", "libc"):
        return "Rust: getopts, syslog, log, libc, unicode-width"
    # Primitive types' impls (`<u64 as Display>`, `<[T]>::sort`) and the rest are std's.
    return "Rust std, core, alloc (fmt, io, net, thread, collections, panics)"


def group(mangled, demangled):
    if mangled.startswith("_R") or RUST_LEGACY.match(mangled):
        return rust_group(demangled)
    if "zmq" in demangled:
        return "C++: libzmq"
    if "itanium_demangle" in demangled or mangled == "__cxa_demangle":
        return "C++: libc++abi's demangler (__cxa_demangle)"
    if mangled.startswith(("_Unwind", "__unw", "unw_")) or "libunwind" in demangled:
        return "C++: libunwind"
    if ("__cxxabiv1" in demangled or mangled.startswith(("__cxa", "__gxx", "_ZSt9terminate"))
            or "std::terminate" in demangled):
        return "C++: libc++abi (exceptions, RTTI)"
    if mangled.startswith("_Z"):
        return "C++: libc++ (std::__1: strings, locale, streams)"
    return "C: libc (musl, or glibc's static parts), compiler-rt"


def functions(binary):
    out = subprocess.run(["nm", "-S", "--size-sort", binary], capture_output=True,
                         text=True, check=True).stdout
    by_addr = {}
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[2] not in "tTwW":
            continue
        addr, size, name = int(parts[0], 16), int(parts[1], 16), parts[3]
        # Aliases share an address (musl's weak names, zig's c.* names): count it once,
        # under a mangled name when there is one.
        if addr not in by_addr or name.startswith(("_Z", "_R")):
            by_addr[addr] = (size, name)
    names = [n for _, n in by_addr.values()]
    demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                               text=True, check=True).stdout.splitlines()
    return [(size, name, dem) for (size, name), dem in zip(by_addr.values(), demangled)]


def sections(binary):
    out = subprocess.run(["readelf", "-S", "-W", binary], capture_output=True, text=True,
                         check=True).stdout
    sizes = collections.OrderedDict()
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and m.group(2) != "NOBITS" and not m.group(1).startswith((".debug", ".symtab", ".strtab")):
            sizes[m.group(1)] = int(m.group(3), 16)
    return sizes


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for binary in sys.argv[1:]:
        groups = collections.Counter()
        count = collections.Counter()
        for size, name, dem in functions(binary):
            g = group(name, dem)
            groups[g] += size
            count[g] += 1
        total = sum(groups.values())
        print(f"\n{binary}: code by origin (function symbols, {total:,} bytes)\n")
        print("| origin | bytes | share | functions |")
        print("|---|---:|---:|---:|")
        for g, size in groups.most_common():
            print(f"| {g} | {size:,} | {100 * size / total:.1f} % | {count[g]:,} |")
        secs = sections(binary)
        print(f"\n{binary}: sections that stay after stripping\n")
        print("| section | bytes |")
        print("|---|---:|")
        for name, size in sorted(secs.items(), key=lambda kv: -kv[1]):
            if size >= 1024:
                print(f"| {name} | {size:,} |")


if __name__ == "__main__":
    main()
