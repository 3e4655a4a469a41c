#!/usr/bin/env bash
# Installs the Debian packages tests/check_vmwatch.rs needs, if they are missing (root;
# idempotent, waits for another apt to finish rather than failing):
#   nagios4-core              the real Nagios 4 core the plugin runs under
#   monitoring-plugins-basic  check_by_ssh, check_dummy: the standard plugins beside ours
#   dma                       nagios4-core needs a mail transport (through bsd-mailx); dma
#                             is one without a listening daemon (exim4, the default, would
#                             start an SMTP server on this machine)
#   mandoc                    `mandoc -T lint` of the man pages (tests/packaging docs group)
set -euo pipefail

pkgs=(nagios4-core monitoring-plugins-basic dma mandoc)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "setup-nagios: need ${missing[*]}; as root: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
echo "setup-nagios: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null; then
    # Stale or missing package lists: refresh once and retry.
    "${apt[@]}" update >/dev/null
    "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
fi
