#!/usr/bin/env bash
# Builds the el6 and el7 RPMs of vmwatch-master and vmwatch-node from one spec, with
# Debian's (or any) rpmbuild, out of the prebuilt portable binaries of `make release`.
#
#   packaging/rpm/build-rpms.sh OUTDIR        (`make rpm` uses OUTDIR=dist)
#
# Environment (the packaging tests use these to build a "next release"):
#   VMWATCH_RPM_RELEASE   Release number before the dist tag (default 1)
#   VMWATCH_RPM_CONF_DIR  directory with the default vmwatch-*.conf (default packaging/conf)
#   VMWATCH_RPM_DISTS     which of el6 el7 to build (default both)
#   VMWATCH_BIN_DIR       directory with the release binaries (default dist)
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: build-rpms.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$top"

release=${VMWATCH_RPM_RELEASE:-1}
conf_dir=${VMWATCH_RPM_CONF_DIR:-packaging/conf}
bin_dir=${VMWATCH_BIN_DIR:-dist}
dists=${VMWATCH_RPM_DISTS:-el6 el7}
# The one version of the crate, so `-V` and the package agree.
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "build-rpms: no version in Cargo.toml" >&2; exit 1; }

bash packaging/ensure-debs.sh rpm

# Every file the spec names, flat in one SOURCES directory (rpmbuild's convention).
work=$(mktemp -d "$top/target/rpmbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/SOURCES
mkdir -p "$src" "$work/db" "$work/tmp"
stage() {
    if [ ! -f "$1" ]; then
        echo "build-rpms: $1 is missing${3:+ ($3)}" >&2
        exit 1
    fi
    cp -p "$1" "$src/$2"
}
stage "$bin_dir/vmwatch-master" vmwatch-master "run make release first"
stage "$bin_dir/vmwatch-node" vmwatch-node "run make release first"
stage "$bin_dir/check_vmwatch" check_vmwatch "run make release first"
stage "$conf_dir/vmwatch-master.conf" vmwatch-master.conf
stage "$conf_dir/vmwatch-node.conf" vmwatch-node.conf
stage init.d/vmwatch-master vmwatch-master.init
stage init.d/vmwatch-node vmwatch-node.init
stage packaging/systemd/vmwatch-master.service vmwatch-master.service
stage packaging/systemd/vmwatch-node.service vmwatch-node.service
stage packaging/logrotate/vmwatch-master vmwatch-master.logrotate
stage packaging/logrotate/vmwatch-node vmwatch-node.logrotate
stage docs/vmwatch-master.8 vmwatch-master.8
stage docs/vmwatch-node.8 vmwatch-node.8
stage docs/check_vmwatch.8 check_vmwatch.8
stage docs/vmwatch.conf.5 vmwatch.conf.5
stage packaging/vmwatch-panel vmwatch-panel "the panel wrapper script"
stage packaging/vmwatch-takeover vmwatch-takeover "the el6 take-over helper"
stage packaging/vmwatch-watchdog vmwatch-watchdog
stage docs/vmwatch-watchdog.8 vmwatch-watchdog.8
stage packaging/cron/vmwatch-master-watchdog vmwatch-master-watchdog.cron
stage packaging/cron/vmwatch-node-watchdog vmwatch-node-watchdog.cron

for dist in $dists; do
    case $dist in
        el6) rhel=6 ;;
        el7) rhel=7 ;;
        *) echo "build-rpms: unknown dist $dist (el6 or el7)" >&2; exit 1 ;;
    esac
    # gzip payload: CentOS 6's rpm 4.8 cannot read zstd, Debian's default. --dbpath keeps
    # rpmbuild away from ~/.rpmdb; flat file names in OUTDIR.
    rpmbuild -bb packaging/rpm/vmwatch.spec \
        --quiet \
        --target x86_64 \
        --dbpath "$work/db" \
        --define "_topdir $work/$dist" \
        --define "_sourcedir $src" \
        --define "_tmppath $work/tmp" \
        --define "_rpmdir $out" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "_binary_payload w9.gzdio" \
        --define "rhel $rhel" \
        --define "dist .$dist" \
        --define "vmw_version $version" \
        --define "vmw_release $release"
    for pkg in vmwatch-master vmwatch-node; do
        f=$out/$pkg-$version-$release.$dist.x86_64.rpm
        [ -f "$f" ] || { echo "build-rpms: $f was not built" >&2; exit 1; }
        echo "built $f ($(stat -c %s "$f") bytes)"
    done
done
