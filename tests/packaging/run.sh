#!/usr/bin/env bash
# Packaging tests (issue #4), run by `make test-packaging` (and so by `make test`).
#
# Installs the tools it misses (Debian packages; busybox for the throwaway RPM root), runs
# `make release` and `make rpm`, then checks: shellcheck; the init scripts for real against
# the release binaries; the systemd units; the man pages; the release binaries' ELF
# dependencies and symbol versions; the RPMs (rpmlint, install/upgrade/erase into a
# throwaway root); taking the services over from the panel's own packages (test doubles of
# them, in a throwaway root where the services run); logrotate; and the end-to-end
# lifecycle test on the release node.
# Prints `N passed, N failed` last; exits non-zero if anything failed.
#
# Runs as root (it installs packages). Everything it creates is under a temporary
# directory (removed at the end unless VMWATCH_KEEP_TEST_DIR=1), under target/ and dist/.
#
# Environment: VMWATCH_PKGTEST_ONLY="initd_master systemd ..." runs only those groups
# (and skips the builds, using dist/ as it is): for working on one part.
set -euo pipefail

TESTS=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$TESTS/../.." && pwd)
cd "$TOP"
WORK=$(mktemp -d /tmp/vmwatch-pkgtest.XXXXXX)
RESULTS=$WORK/results
BIN_DIR=$TOP/dist
: >"$RESULTS"
export TESTS TOP WORK RESULTS BIN_DIR

# shellcheck source=/dev/null
. "$TESTS/lib.sh"
for f in "$TESTS"/t-*.sh; do
    # shellcheck source=/dev/null
    . "$f"
done

cleanup() {
    local pidf pid mnt
    # Daemons a failed check may have left running: only ours (the release binaries, and
    # whatever runs inside a throwaway root of ours), found by their pidfiles.
    while IFS= read -r pidf; do
        pid=$(cat "$pidf" 2>/dev/null || true)
        case $(exe_of "$pid") in
            "$BIN_DIR"/vmwatch-* | "$WORK"/*) kill -TERM "$pid" 2>/dev/null || true ;;
        esac
    done < <(find "$WORK" -xdev -name '*.pid' 2>/dev/null)
    # A /proc a failed takeover group left mounted in its throwaway root.
    while IFS= read -r mnt; do
        umount "$mnt" || umount -l "$mnt" || true
    done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts)
    if [ "${VMWATCH_KEEP_TEST_DIR:-0}" = 1 ]; then
        echo "test directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# run_group NAME: runs test_NAME in a subshell (a crash ends that group, not the run).
#
# A group stops at its first failing step: a step is any command the group runs itself
# (mkdir, sed, a helper that sets up a daemon), which set -e makes fatal to the group. The
# assertions (check, check_eq, check_rc, ...) record PASS or FAIL and return 0, so a failed
# assertion is counted and the group goes on. The subshell runs as a command of its own
# with set +e around it: as the left side of `||` it would run with set -e ignored.
run_group() {
    local name=$1 start=$SECONDS rc
    if [ -n "${VMWATCH_PKGTEST_ONLY:-}" ] && [[ " $VMWATCH_PKGTEST_ONLY " != *" $name "* ]]; then
        return 0
    fi
    section "$name"
    set +e
    (
        set -eEuo pipefail
        # To stderr: the failing step may have had its stdout redirected to a file.
        trap 'echo "  group $name stopped: \`$BASH_COMMAND\` failed (exit $?, line $LINENO)" >&2' ERR
        "test_$name"
    )
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        fail "$name: the test group itself stopped with exit $rc (see above)"
    fi
    echo "  ($name: $((SECONDS - start)) s)"
}

test_tools() {
    # rpm: rpmbuild; systemd: systemd-analyze; groff-base, mandoc: man page checks; binutils:
    # readelf, objdump; libvirt0: the release node's only non-glibc dependency.
    check "Debian packages for the tests are installed" bash "$TOP/packaging/ensure-debs.sh" \
        rpm rpmlint shellcheck systemd logrotate groff-base mandoc binutils libvirt0 procps python3
    check "busybox-static is at hand for the throwaway RPM root's /bin/sh" fetch_busybox
}

test_build() {
    local start=$SECONDS
    check "make release: portable binaries in dist/" bash packaging/release.sh
    echo "  (make release: $((SECONDS - start)) s)"
    start=$SECONDS
    check "make rpm: el6 and el7 RPMs in dist/" bash packaging/rpm/build-rpms.sh dist
    echo "  (make rpm: $((SECONDS - start)) s)"
}

groups="tools build shellcheck docs release_binaries glibc_compat initd_master initd_node watchdog systemd hardening logrotate rpm takeover e2e"
if [ -n "${VMWATCH_PKGTEST_ONLY:-}" ]; then
    echo "only: $VMWATCH_PKGTEST_ONLY"
fi
for g in $groups; do
    run_group "$g"
done

passed=$(grep -c '^PASS$' "$RESULTS" || true)
failed=$(grep -c '^FAIL$' "$RESULTS" || true)
skipped=$(grep -c '^SKIP$' "$RESULTS" || true)
echo
if [ "$failed" -gt 0 ]; then
    echo "packaging tests: FAILED"
fi
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
