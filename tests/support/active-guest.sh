#!/usr/bin/env bash
# Prepares a tiny "active" test guest for vmwatch's end-to-end tests: a Debian
# kernel plus a busybox initramfs whose /init keeps sending a few network packets
# and writing to its disk, so libvirt's domstats show non-zero net.0.tx.pkts and
# block.0.wr.reqs deltas for it (and zero for an OS-less guest, the "idle" case).
#
# Everything comes from Debian packages fetched with apt (the only network the
# test machines have); nothing is installed on the host: the small tools it
# needs (cpio, xz-utils and zstd for compressed kernel modules) come from
# tests/support/setup-host.sh (`make setup`).
#
# Usage:
#   active-guest.sh [CACHE_DIR]
#       Builds (once; cached) CACHE_DIR/vmlinuz and CACHE_DIR/initrd.cpio.gz and
#       prints exactly two lines on stdout:
#           KERNEL=/abs/path/vmlinuz
#           INITRD=/abs/path/initrd.cpio.gz
#       CACHE_DIR defaults to target/test-guest under the repository root.
#       All progress goes to stderr. A warm run does no downloads.
#   active-guest.sh --xml NAME DISK [KERNEL INITRD [CONSOLE_LOG]]
#       Prints the libvirt domain XML shared by the tests and the demo. Without
#       KERNEL/INITRD it is the same machine with no OS (an idle guest). With
#       CONSOLE_LOG the serial console goes to that file, else to a pty.
#       Domain type 'qemu' (TCG) unless VMWATCH_GUEST_DOMTYPE=kvm|auto: see
#       print_xml for why not KVM.
#   active-guest.sh --selftest
#       Proves it on qemu:///system: starts an active and an OS-less guest and
#       checks that only the active one's tx.pkts and wr.reqs grow.
#
# Guest network traffic: the guest gives itself a link-local (169.254.0.0/16)
# address on its only NIC and sends ARP requests for its /30 peer. ARP is a
# link-layer broadcast that is never routed, and with interface type='ethernet'
# the NIC is a host tap (vnetN) attached to nothing, so the frames end at that
# tap: nothing leaves the machine. IPv6 is disabled in the guest so it sends
# nothing else on its own.
set -euo pipefail

log() { printf 'active-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

script_path=$(readlink -f "${BASH_SOURCE[0]}")
repo_root=$(cd "$(dirname "$script_path")/../.." && pwd)

# Guest-side addresses (see the header: link-local, ARP only, stays on the tap).
GUEST_ADDR=169.254.77.2/30
PEER_ADDR=169.254.77.1
# Modules the guest needs for its NIC and disk; their dependencies are resolved
# from each module's own .modinfo "depends=" field (the package has no modules.dep).
WANT_MODULES=(virtio_pci virtio_net virtio_blk)

# ---------------------------------------------------------------------------
# Domain XML (one definition for tests, demo and --selftest).
xml_safe() {
    # Arguments are pasted into XML: refuse characters that would need escaping
    # rather than escaping them, since no sane test path contains them.
    case "$1" in
        *[\<\>\&\'\"]*) die "refusing XML-unsafe argument: $1" ;;
    esac
}

print_xml() {
    [ "$#" -eq 2 ] || [ "$#" -eq 4 ] || [ "$#" -eq 5 ] \
        || die "usage: $0 --xml NAME DISK [KERNEL INITRD [CONSOLE_LOG]]"
    local name=$1 disk=$2 kernel=${3:-} initrd=${4:-} console=${5:-} a
    for a in "$@"; do xml_safe "$a"; done
    # Plain emulation (TCG) by default, even where /dev/kvm exists: on this
    # project's machines /dev/kvm is nested KVM that cannot boot a Linux kernel
    # (seen: SeaBIOS took 15-30 s to print one line, then the kernel's
    # decompressor spun at 100% CPU for minutes, with and without KASLR, and as a
    # PVH ELF too), while TCG reaches /init in about 4 s and idles cheaply.
    # VMWATCH_GUEST_DOMTYPE=kvm opts in where KVM is real.
    # VMWATCH_GUEST_QUIET=N keeps the guest idle for its first N seconds.
    case "${VMWATCH_GUEST_QUIET:-}" in
        ''|*[!0-9]*) [ -z "${VMWATCH_GUEST_QUIET:-}" ] || die "VMWATCH_GUEST_QUIET must be a number of seconds" ;;
    esac
    local domtype=${VMWATCH_GUEST_DOMTYPE:-qemu}
    case "$domtype" in
        kvm|qemu) ;;
        auto) domtype=qemu; [ -w /dev/kvm ] && domtype=kvm ;;
        *) die "VMWATCH_GUEST_DOMTYPE must be kvm, qemu or auto, not $domtype" ;;
    esac
    local boot=''
    if [ -n "$kernel" ]; then
        boot="
    <kernel>$kernel</kernel>
    <initrd>$initrd</initrd>
    <cmdline>console=ttyS0 quiet${VMWATCH_GUEST_QUIET:+ vmwatch.quiet=$VMWATCH_GUEST_QUIET}</cmdline>"
    fi
    local serial="<serial type='pty'><target port='0'/></serial>"
    if [ -n "$console" ]; then
        serial="<serial type='file'><source path='$console'/><target port='0'/></serial>"
    fi
    cat <<EOF
<domain type='$domtype'>
  <name>$name</name>
  <memory unit='MiB'>112</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>$boot
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <model type='virtio'/>
    </interface>
    $serial
  </devices>
</domain>
EOF
}

# ---------------------------------------------------------------------------
# Package lists: at most one apt-get update. Host tools: setup-host.sh's.
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -q >&2
        apt_updated=1
    fi
}
need_pkg() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' && return 0
    die "package $1 is missing: run \`make setup\` (tests/support/setup-host.sh) as root"
}

# The binary package the meta-package linux-image-amd64 currently points at
# (e.g. linux-image-6.1.0-56-amd64). Needs package lists: update if we have none.
kernel_package() {
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
          | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1) || true
    if [ -z "$pkg" ]; then
        apt_update_once
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
              | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1) || true
    fi
    [ -n "$pkg" ] || die "cannot find the kernel package linux-image-amd64 depends on"
    printf '%s\n' "$pkg"
}

# Prints a module file's content uncompressed, whatever Debian compressed it with.
module_cat() {
    case "$1" in
        *.ko) cat "$1" ;;
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -dcq "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) die "unknown module format: $1" ;;
    esac
}

# The guest's /init. It runs as PID 1 from the initramfs; its stdout is the
# serial console (console=ttyS0), so each round is visible in the console log.
init_text() {
    cat <<EOF
#!/bin/busybox sh
# vmwatch active test guest: sends packets and writes to disk forever.
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No IPv6: the guest sends only the ARP requests below (see active-guest.sh).
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6
echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6
# Dependency order was worked out when the initramfs was built.
while read -r m; do
    insmod "/lib/modules/\$m.ko" || echo "vmwatch-guest: insmod \$m failed"
done </lib/modules/load-order
# devtmpfs creates /dev/vda and the kernel names the NIC asynchronously: wait.
n=0
while [ ! -b /dev/vda ] || [ -z "\$(ls /sys/class/net | grep -v '^lo\$')" ]; do
    n=\$((n + 1))
    [ "\$n" -gt 100 ] && { echo "vmwatch-guest: no disk or NIC"; break; }
    sleep 0.1
done
nic=\$(ls /sys/class/net | grep -v '^lo\$' | head -n1)
ip link set lo up
ip link set "\$nic" up
ip addr add $GUEST_ADDR dev "\$nic"
# Write somewhere within the disk, whatever its size (sectors of 512 bytes).
blocks=\$((\$(cat /sys/block/vda/size) / 8))
[ "\$blocks" -gt 0 ] || blocks=1
echo "vmwatch-guest: up, nic=\$nic disk=\$blocks x 4KiB"
# vmwatch.quiet=N on the kernel command line: stay idle N seconds first, so a
# test sees an idle warning raised and then cleared by real activity.
quiet=\$(sed -n 's/.*vmwatch\.quiet=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "\$quiet" ]; then
    echo "vmwatch-guest: quiet for \$quiet s"
    sleep "\$quiet"
fi
i=0
while :; do
    i=\$((i + 1))
    # Link-layer only: one ARP request for the /30 peer, which nobody answers
    # (arping then waits 1 s for a reply). In the background beside a 1 s sleep,
    # so a round takes about a second whether arping waits, is answered or fails.
    arping -q -c 1 -w 1 -I "\$nic" $PEER_ADDR &
    sleep 1
    wait
    # Then 16 KiB to the disk, flushed so it reaches the host as write requests
    # (zeros: /dev/urandom stalls for seconds until the guest's RNG is seeded).
    dd if=/dev/zero of=/dev/vda bs=4k count=4 seek=\$(((i * 4) % blocks)) conv=fsync 2>/dev/null \\
        || echo "vmwatch-guest: dd failed"
    echo "vmwatch-guest: round \$i at \$(cut -d' ' -f1 /proc/uptime) s"
done
EOF
}

# What the cached files are built from; a change in it rebuilds them. Bump
# BUILD_FORMAT when the build steps change in a way the init text does not show.
BUILD_FORMAT=1
build_stamp() {
    { echo "format $BUILD_FORMAT"; echo "modules ${WANT_MODULES[*]}"; init_text; } \
        | sha256sum | cut -d' ' -f1
}

build() {
    local cache=$1
    mkdir -p "$cache"
    cache=$(cd "$cache" && pwd)
    local kernel=$cache/vmlinuz initrd=$cache/initrd.cpio.gz stamp=$cache/stamp
    # Changing the guest's /init or the module list rebuilds; a warm run with
    # the same inputs touches no network.
    local want_stamp
    want_stamp=$(build_stamp)

    # Serialise concurrent callers (parallel tests) on the same cache.
    exec 9>"$cache/.lock"
    flock 9

    if [ -f "$kernel" ] && [ -f "$initrd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ]; then
        log "cached: $(cat "$cache/kernel-version" 2>/dev/null || echo '?')"
        printf 'KERNEL=%s\nINITRD=%s\n' "$kernel" "$initrd"
        return 0
    fi

    [ "$(id -u)" = 0 ] || die "building the guest needs root (apt-get)"
    need_pkg cpio

    # Leftovers of a build that was killed (we hold the lock: none is running).
    rm -rf "$cache"/.build.*
    local work
    work=$(mktemp -d "$cache/.build.XXXXXX")
    # shellcheck disable=SC2064  # expand $work now: it is local to this function
    trap "rm -rf '$work'" EXIT
    trap 'exit 130' INT TERM HUP

    local kpkg
    kpkg=$(kernel_package)
    log "downloading $kpkg and busybox-static (not installed on the host)"
    # apt-get download as root otherwise warns that _apt cannot write here.
    # Stale package lists name versions the mirror no longer has: update, retry.
    if ! (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" busybox-static >&2); then
        [ "$apt_updated" = 0 ] || die "apt-get download failed"
        apt_update_once
        kpkg=$(kernel_package)
        rm -f "$work"/*.deb
        (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" busybox-static >&2)
    fi

    log "extracting the kernel package"
    mkdir "$work/k" "$work/bb"
    # Only the kernel image and the modules: the rest of the package is not needed.
    dpkg-deb --fsys-tarfile "$work"/linux-image-*.deb \
        | tar -x -C "$work/k" --wildcards './boot/vmlinuz-*' './lib/modules/*'
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"
    [ -x "$work/bb/bin/busybox" ] || die "busybox-static has no /bin/busybox"

    local vmlinuz kver moddir
    vmlinuz=$(find "$work/k/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
    [ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kpkg"
    kver=${vmlinuz##*/vmlinuz-}
    moddir=$work/k/lib/modules/$kver
    [ -d "$moddir/kernel" ] || die "no modules for $kver in $kpkg"

    # Index every module file by name (hyphens and underscores are the same name).
    local -A modfile=()
    local f b
    while IFS= read -r -d '' f; do
        b=${f##*/}; b=${b%%.ko*}; b=${b//-/_}
        modfile[$b]=$f
    done < <(find "$moddir/kernel" -name '*.ko*' -print0)
    local -A builtin=()
    if [ -f "$moddir/modules.builtin" ]; then
        while IFS= read -r f; do
            b=${f##*/}; b=${b%%.ko*}; b=${b//-/_}
            builtin[$b]=1
        done <"$moddir/modules.builtin"
    fi

    local root=$work/root
    mkdir -p "$root/bin" "$root/lib/modules" "$root/proc" "$root/sys" "$root/dev"
    cp "$work/bb/bin/busybox" "$root/bin/busybox"
    : >"$root/lib/modules/load-order"

    # Depth-first: a module's dependencies go before it in load-order.
    local -A seen=()
    add_module() {
        local name=${1//-/_} file deps d
        [ -n "${seen[$name]:-}" ] && return 0
        seen[$name]=1
        if [ -n "${builtin[$name]:-}" ]; then
            log "module $name: built into $kver"
            return 0
        fi
        file=${modfile[$name]:-}
        [ -n "$file" ] || die "module $name not found in $kpkg"
        case "$file" in
            *.xz) need_pkg xz-utils ;;
            *.zst) need_pkg zstd ;;
        esac
        module_cat "$file" >"$root/lib/modules/$name.ko"
        # .modinfo is NUL-separated key=value strings; depends= lists modules.
        deps=$(tr '\0' '\n' <"$root/lib/modules/$name.ko" | LC_ALL=C sed -n 's/^depends=//p')
        for d in ${deps//,/ }; do add_module "$d"; done
        echo "$name" >>"$root/lib/modules/load-order"
    }
    local m
    for m in "${WANT_MODULES[@]}"; do add_module "$m"; done
    log "kernel $kver, modules: $(tr '\n' ' ' <"$root/lib/modules/load-order")"

    init_text >"$root/init"
    chmod 755 "$root/init"

    log "packing the initramfs"
    (cd "$root" && find . -print0 | LC_ALL=C sort -z \
        | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -9n >"$work/initrd.cpio.gz"
    cp "$vmlinuz" "$work/vmlinuz"

    # Publish atomically: a reader never sees a half-written file, and the stamp
    # is written last so an interrupted build is redone.
    rm -f "$stamp"
    mv -f "$work/vmlinuz" "$kernel"
    mv -f "$work/initrd.cpio.gz" "$initrd"
    printf '%s\n' "$kver" >"$cache/kernel-version"
    printf '%s\n' "$want_stamp" >"$stamp"
    rm -rf "$work"
    trap - EXIT
    log "built in $cache"
    printf 'KERNEL=%s\nINITRD=%s\n' "$kernel" "$initrd"
}

# ---------------------------------------------------------------------------
# --selftest: real guests on qemu:///system.
selftest() {
    local uri=qemu:///system
    if ! virsh -q -c "$uri" version >/dev/null 2>&1; then
        log "libvirtd not answering: running setup-host.sh"
        bash "$repo_root/tests/support/setup-host.sh"
    fi
    local out kernel initrd
    out=$(bash "$script_path")
    kernel=$(sed -n 's/^KERNEL=//p' <<<"$out")
    initrd=$(sed -n 's/^INITRD=//p' <<<"$out")

    local tmp active=vmwatch-active-probe-$$ idle=vmwatch-idle-probe-$$
    tmp=$(mktemp -d /tmp/vmwatch-active-guest.XXXXXX)
    # Clean up whatever happens: both guests gone, temp files gone.
    # shellcheck disable=SC2064  # expand names now
    trap "for d in $active $idle; do
              virsh -q -c $uri destroy \$d >/dev/null 2>&1 || true
              virsh -q -c $uri undefine \$d >/dev/null 2>&1 || true
          done; rm -rf '$tmp'" EXIT
    # A signal would otherwise end bash without running the EXIT trap.
    trap 'exit 130' INT TERM HUP

    truncate -s 16M "$tmp/active.raw" "$tmp/idle.raw"
    print_xml "$active" "$tmp/active.raw" "$kernel" "$initrd" "$tmp/active.console" >"$tmp/active.xml"
    print_xml "$idle" "$tmp/idle.raw" >"$tmp/idle.xml"
    virsh -q -c "$uri" define "$tmp/active.xml" >&2
    virsh -q -c "$uri" define "$tmp/idle.xml" >&2
    virsh -q -c "$uri" start "$active" >&2
    virsh -q -c "$uri" start "$idle" >&2

    # Wait for the guest to report a few rounds on its console (boot to /init
    # takes about 4 s under TCG on an idle machine, more when it is busy).
    local n=0
    until grep -Eq 'vmwatch-guest: round 3([^0-9]|$)' "$tmp/active.console" 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -gt 180 ]; then
            log "guest console so far:"; cat "$tmp/active.console" >&2 || true
            die "active guest did not reach round 3 in 90 s"
        fi
        sleep 0.5
    done
    log "active guest console: $(grep -c 'vmwatch-guest: round' "$tmp/active.console") rounds so far"

    stat_of() { # DOMSTATS_TEXT DOMAIN KEY
        awk -v d="Domain: '$2'" -v k="$3" '
            $0 == d { on = 1; next } /^Domain:/ { on = 0 }
            on { split($1, kv, "="); if (kv[1] == k) print kv[2] }' <<<"$1"
    }
    local s1 s2 cmd=(virsh -c "$uri" domstats --interface --block "$active" "$idle")
    s1=$("${cmd[@]}")
    sleep 5
    s2=$("${cmd[@]}")
    log "\$ ${cmd[*]}   (first)"; printf '%s\n' "$s1" >&2
    log "\$ ${cmd[*]}   (5 s later)"; printf '%s\n' "$s2" >&2

    log "active guest console (last lines):"
    tail -n 3 "$tmp/active.console" | tr -d '\r' >&2

    local ok=1 k a1 a2 i1 i2
    for k in net.0.tx.pkts block.0.wr.reqs; do
        a1=$(stat_of "$s1" "$active" "$k"); a2=$(stat_of "$s2" "$active" "$k")
        i1=$(stat_of "$s1" "$idle" "$k"); i2=$(stat_of "$s2" "$idle" "$k")
        log "$k: active $a1 -> $a2, OS-less $i1 -> $i2"
        if [ -z "$a1" ] || [ -z "$a2" ] || [ "$a2" -le "$a1" ]; then
            log "FAIL: active guest's $k did not grow"; ok=0
        fi
        # The OS-less guest runs only the BIOS: it must send and write nothing.
        if [ "$i1" != 0 ] || [ "$i2" != 0 ]; then
            log "FAIL: OS-less guest's $k is '$i1' -> '$i2', not 0"; ok=0
        fi
    done
    if [ "$ok" = 1 ]; then
        echo "active-guest selftest: 1 passed, 0 failed"
    else
        echo "active-guest selftest: 0 passed, 1 failed"
        exit 1
    fi
}

case "${1:-}" in
    --xml) shift; print_xml "$@" ;;
    --selftest) selftest ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script_path" | sed '$d' ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) build "${1:-$repo_root/target/test-guest}" ;;
esac
