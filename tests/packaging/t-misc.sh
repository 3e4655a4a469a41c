# shellcheck shell=bash
# Checks with shellcheck, of the man pages, logrotate, and the end-to-end lifecycle test
# on the release node.

test_shellcheck() {
    local f
    # The init scripts: every severity (style included), as they ship.
    for f in "$TOP"/init.d/vmwatch-master "$TOP"/init.d/vmwatch-node; do
        check "shellcheck $(basename "$f") (all severities)" shellcheck -S style "$f"
    done
    # The el6 take-over helper the scriptlets run: /bin/sh, every severity.
    check "shellcheck vmwatch-takeover (sh, all severities)" shellcheck -s sh -S style "$TOP/packaging/vmwatch-takeover"
    # Our build and test scripts: warnings and errors.
    check "shellcheck packaging and test scripts" shellcheck -x -S warning \
        "$TOP"/packaging/*.sh "$TOP"/packaging/rpm/*.sh "$TOP"/tests/packaging/*.sh \
        "$TOP"/tests/packaging/functions
    # The scriptlets and triggers as rpm runs them (/bin/sh, which is not bash on every system).
    # rpm -qp does not always fail on a missing file: ask only about RPMs that are there.
    local sh=$WORK/scriptlets.sh rpms
    rpms=("$BIN_DIR"/vmwatch-*.el6.x86_64.rpm "$BIN_DIR"/vmwatch-*.el7.x86_64.rpm)
    if [ -f "${rpms[0]}" ] && [ -f "${rpms[-1]}" ] &&
        rpm -qp --scripts --triggers "${rpms[@]}" >"$sh.raw" 2>/dev/null; then
        { echo '#!/bin/sh'; echo 'set -- 1 1'; grep -v 'scriptlet (using /bin/sh)' "$sh.raw"; } >"$sh"
        check "shellcheck the RPM scriptlets (sh)" shellcheck -s sh -S warning "$sh"
    else
        fail "shellcheck the RPM scriptlets: no RPMs in dist/ to read them from"
    fi
}

test_docs() {
    local page bin opt opts file section dir=$WORK/docs
    mkdir -p "$dir"
    for page in vmwatch-master.8 vmwatch-node.8 check_vmwatch.8 vmwatch.conf.5; do
        file=$TOP/docs/$page
        run_cmd groff -man -t -ww -z "$file"
        if [ "$RC" -eq 0 ] && [ -z "$OUT" ]; then
            pass "docs/$page: groff -man -ww finds nothing to warn about"
        else
            fail "docs/$page: groff -man -ww (exit $RC):"
            printf '%s\n' "$OUT" | sed 's/^/        | /'
        fi
        # mandoc's warnings and errors (its STYLE notes, such as lines over 80 bytes, are
        # not problems in a man page).
        run_cmd mandoc -T lint -W warning "$file"
        if [ "$RC" -eq 0 ] && [ -z "$OUT" ]; then
            pass "docs/$page: mandoc -T lint -W warning is clean"
        else
            fail "docs/$page: mandoc -T lint -W warning (exit $RC):"
            printf '%s\n' "$OUT" | sed 's/^/        | /'
        fi
        for section in NAME SYNOPSIS DESCRIPTION FILES "SEE ALSO"; do
            check "docs/$page has a $section section" grep -q "^\\.SH \"\\?$section\"\\?\$" "$file"
        done
        case $page in
            *.5) continue ;;
        esac
        for section in OPTIONS SIGNALS "EXIT STATUS" EXAMPLES; do
            check "docs/$page has a $section section" grep -q "^\\.SH \"\\?$section\"\\?\$" "$file"
        done
        # Every long option the binary's --help lists is documented (read from the binary,
        # so a new option without a man page entry fails here).
        bin=$BIN_DIR/${page%.8}
        opts=$("$bin" --help | grep -Eo -- '--[a-z][a-z-]+' | sort -u)
        check "${page%.8} --help lists options" test -n "$opts"
        # roff writes a hyphen as \-: compare against the page with those unescaped.
        sed 's/\\-/-/g' "$file" >"$dir/$page.plain"
        for opt in $opts; do
            check "docs/$page documents $opt" grep -q -- "$opt" "$dir/$page.plain"
        done
    done
    # vmwatch.conf(5) names every key the daemons print with -t.
    for bin in vmwatch-master vmwatch-node; do
        write_daemon_conf "$bin" "$dir" 1515 test:///default
        run_cmd "$BIN_DIR/$bin" -t -c "$dir/$bin.conf"
        check_rc "$bin -t with a test configuration" 0
        for opt in $(printf '%s\n' "$OUT" | sed -n 's/^\([a-z_]*\)=.*/\1/p'); do
            check "docs/vmwatch.conf.5 describes $bin's key $opt" grep -q "^\\.B $opt\$" "$TOP/docs/vmwatch.conf.5"
        done
    done
}

# logrotate with the packaged files (paths pointed at a running test daemon): the log is
# moved, the daemon gets SIGHUP, keeps running and writes to the new file.
test_logrotate() {
    local dir=$WORK/logrotate name conf pid port
    mkdir -p "$dir"
    for name in vmwatch-master vmwatch-node; do
        port=$(free_port)
        conf=$dir/$name.conf
        write_daemon_conf "$name" "$dir" "$port" test:///default
        sed -e "s|/usr/local/mgr5/var/$name.log|$dir/$name.log|" \
            -e "s|/var/run/$name.pid|$dir/$name.pid|" \
            "$TOP/packaging/logrotate/$name" >"$dir/$name.logrotate"
        check "$name logrotate file: SIGHUP, no copytruncate" \
            bash -c "grep -q 'kill -HUP' '$TOP/packaging/logrotate/$name' && ! grep -Eq '^[[:space:]]*copytruncate' '$TOP/packaging/logrotate/$name'"

        run_cmd "$BIN_DIR/$name" -c "$conf" -p "$dir/$name.pid"
        check_rc "$name: started for the logrotate test" 0
        pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
        check "$name: its log file has lines" test -s "$dir/$name.log"
        run_cmd logrotate -f -s "$dir/state.logrotate" "$dir/$name.logrotate"
        check_rc "logrotate -f with the packaged $name file" 0
        check "$name: the old log was moved to .1" test -s "$dir/$name.log.1"
        check "$name: a new, empty log was created" test -f "$dir/$name.log"
        sleep 0.5
        check "$name: still running after SIGHUP" pid_alive "$pid"
        kill -TERM "$pid"
        check "$name: stops on SIGTERM" wait_gone "$pid" 10
        check "$name: after SIGHUP it wrote to the new log file (reopened it)" test -s "$dir/$name.log"
    done
}

# The other half's end-to-end test (real libvirtd, real guests), with the release binaries
# instead of the debug ones.
test_e2e() {
    if [ ! -f "$TOP/tests/e2e_lifecycle.rs" ]; then
        skip "e2e lifecycle with the release node: tests/e2e_lifecycle.rs does not exist yet"
        return 0
    fi
    # Both release binaries: the static master is what the master RPM ships too.
    run_cmd env VMWATCH_NODE_BIN="$BIN_DIR/vmwatch-node" VMWATCH_MASTER_BIN="$BIN_DIR/vmwatch-master" \
        cargo test --test integration e2e_lifecycle:: -- --include-ignored --test-threads=1
    check_rc "e2e lifecycle test with VMWATCH_NODE_BIN=dist/vmwatch-node VMWATCH_MASTER_BIN=dist/vmwatch-master" 0
    check_out "... ran tests (not an empty run)" 'test result: ok\. [1-9][0-9]* passed'
    printf '%s\n' "$OUT" | grep -E '^test .* \.\.\. |^test result' | sed 's/^/        | /' || true
}
