#!/usr/bin/env bash
# Installs and starts everything vmwatch's build and tests need on Debian 12 (root):
# the tests themselves install nothing.
# Idempotent: installs only what is missing, starts daemons only if not running.
# Used by `make test`, `make demo` and .ci/run; safe to run by hand.
set -euo pipefail

log() { printf 'setup-host: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (installs packages, starts libvirtd)"; exit 1
fi

need_pkgs=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$1"); }
# binutils: the end-to-end tests check tests/support/guest-firmware.hex against
# its assembly source with `as` and `objcopy`. faketime (libfaketime): the
# clock tests step the wall clock of the daemon under test (tests/e2e_clock.rs).
# iproute2, nftables: the network cut of tests/master_hostile.rs (a namespace,
# a veth pair, a DROP rule). cpio, xz-utils, zstd: tests/support/active-guest.sh
# packs the active guest's initramfs from a Debian kernel's modules.
for p in pkg-config g++ make libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu \
         libvirt-clients qemu-system-x86 binutils faketime iproute2 nftables \
         cpio xz-utils zstd ; do
    want "$p"
done
# Extra packages asked for by the caller (e.g. packaging tests), space separated.
for p in ${SETUP_EXTRA_PKGS:-}; do want "$p"; done

# A killed daemon may linger as a zombie when nothing reaps it (no init here).
# Only root's count: another user's session daemon (e.g. a bench run as an
# ordinary user with VMWATCH_BENCH_URI=qemu:///session) is not the system
# libvirtd the tests connect to.
running() {
    local p
    for p in $(pgrep -u root -x "$1" 2>/dev/null); do
        grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null || return 0
    done
    return 1
}

# Say what will change before changing anything.
planned=()
[ "${#need_pkgs[@]}" -gt 0 ] && planned+=("install Debian packages: ${need_pkgs[*]}")
getent group kvm >/dev/null || planned+=("create group kvm")
getent group libvirt-qemu >/dev/null || planned+=("create group libvirt-qemu")
getent passwd libvirt-qemu >/dev/null || planned+=("create system user libvirt-qemu")
grep -q '^# vmwatch test host' /etc/libvirt/qemu.conf 2>/dev/null ||
    planned+=("append to /etc/libvirt/qemu.conf: user/group root, security_driver none (QEMU as root, no DBus here)")
running virtlogd || planned+=("start virtlogd")
running libvirtd || planned+=("start libvirtd")
if [ "${#planned[@]}" -gt 0 ]; then
    log "this test host needs changes:"
    for p in "${planned[@]}"; do log "  - $p"; done
else
    log "nothing to change: packages installed, libvirtd running"
fi

if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# libvirtd's QEMU driver refuses to start without these users and directories.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm libvirt-qemu
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu

# No systemd and no DBus here: run QEMU as root without a security driver.
qconf=/etc/libvirt/qemu.conf
if ! grep -q '^# vmwatch test host' "$qconf" 2>/dev/null; then
    log "configuring $qconf for a root-run test host"
    {
        echo '# vmwatch test host'
        echo 'user = "root"'
        echo 'group = "root"'
        echo 'security_driver = "none"'
    } >>"$qconf"
fi

# A daemon must not keep the files this script inherited: run as
# `flock /tmp/vmwatch-libvirt.lock make test`, the lock's file is open here,
# and a libvirtd holding it would keep the lock taken for as long as it runs
# (every later `flock` would wait forever).
start_daemon() {
    (
        for p in /proc/self/fd/*; do
            fd=${p##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec "$@"
    )
}
running virtlogd || { log "starting virtlogd"; start_daemon /usr/sbin/virtlogd -d; }
if ! running libvirtd; then
    log "starting libvirtd"
    start_daemon /usr/sbin/libvirtd -d
fi
for _ in $(seq 1 50); do
    virsh -q -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.2
done
virsh -q -c qemu:///system version >/dev/null 2>&1 || { log "libvirtd did not answer"; exit 1; }
log "libvirtd ready ($(virsh -c qemu:///system version 2>/dev/null | grep -i 'running hypervisor' | sed 's/.*: //'))"

# The operators' tools the tests run for real (Nagios, OpenSSH, rsyslog, logrotate,
# carbon-cache), installed with every service start refused.
bash "$(dirname "$0")/setup-nagios.sh"
