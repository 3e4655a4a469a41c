#!/usr/bin/env bash
# The shipped binaries' sizes as markdown table rows, against issue 10's target of at most
# 1,500,000 bytes each (held by the packaging tests, tests/packaging/t-release.sh).
#
#   bash tests/support/binary-sizes.sh [--no-header] [DIR]
#
# DIR is where `make release` put them (default dist/). Prints a header and one row per
# binary: bytes, the target, the share of it used and the margin ("over by ..." when over:
# it reports, the packaging tests fail). Exits 1 if a binary is missing (its row says so).
# Reads the files only: run `make release` first (docs/benchmarks.md, "Binary sizes").
set -euo pipefail

TARGET_BYTES=1500000
BINARIES="vmwatch-master vmwatch-node check_vmwatch"

header=1
if [ "${1:-}" = --no-header ]; then
    header=0
    shift
fi
dir=${1:-$(cd "$(dirname "$0")/../.." && pwd)/dist}

# group N: 1234567 as 1,234,567.
group() {
    printf '%s' "$1" | rev | sed -E 's/([0-9]{3})/\1,/g; s/,$//' | rev
}

if [ "$header" = 1 ]; then
    echo "| binary | bytes | target | of target | margin |"
    echo "|---|---:|---:|---:|---:|"
fi
rc=0
for b in $BINARIES; do
    f=$dir/$b
    if [ ! -f "$f" ]; then
        echo "| $b | missing (run \`make release\`) | $(group $TARGET_BYTES) | | |"
        rc=1
        continue
    fi
    size=$(stat -c %s "$f")
    pct=$(awk -v s="$size" -v t="$TARGET_BYTES" 'BEGIN { printf "%.1f %%", 100 * s / t }')
    margin=$((TARGET_BYTES - size))
    if [ "$margin" -lt 0 ]; then
        margin_text="over by $(group $((-margin)))"
    else
        margin_text=$(group "$margin")
    fi
    echo "| $b | $(group "$size") | $(group $TARGET_BYTES) | $pct | $margin_text |"
done
exit "$rc"
