#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet (root only).
# The packaging build and tests call it, so that they work on a fresh Debian 12 machine.
#   packaging/ensure-debs.sh rpm rpmlint shellcheck
set -euo pipefail

missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "ensure-debs: need ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "ensure-debs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# One `apt-get update` per machine is enough for this: skip it when lists are present.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get update -q >/dev/null
fi
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    # Stale lists (a package moved on since the last update): refresh once and retry.
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
