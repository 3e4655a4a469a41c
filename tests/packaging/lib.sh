# shellcheck shell=bash
# Helpers for the packaging tests (sourced by tests/packaging/run.sh and the t-*.sh files).
#
# Every check appends PASS or FAIL to $RESULTS, so checks made inside subshells (each test
# group runs in one) still count; run.sh prints the totals at the end.

: "${RESULTS:?RESULTS must name the results file}"

pass() {
    printf '  ok    %s\n' "$*"
    echo PASS >>"$RESULTS"
}

fail() {
    printf '  FAIL  %s\n' "$*"
    echo FAIL >>"$RESULTS"
}

skip() {
    printf '  skip  %s\n' "$*"
    echo SKIP >>"$RESULTS"
}

section() {
    printf '\n== %s\n' "$*"
}

# check DESCRIPTION COMMAND...: passes when COMMAND exits 0; on failure shows its output.
check() {
    local desc=$1 out rc
    shift
    out=$("$@" 2>&1) && rc=0 || rc=$?
    if [ "$rc" -eq 0 ]; then
        pass "$desc"
    else
        fail "$desc (exit $rc from: $*)"
        [ -n "$out" ] && printf '%s\n' "$out" | tail -n 30 | sed 's/^/        | /'
    fi
    return 0
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then
        pass "$1"
    else
        fail "$1: expected [$2], got [$3]"
    fi
}

# check_rc DESCRIPTION EXPECTED_RC: compares the last run_cmd's exit status, shows its output.
check_rc() {
    if [ "$RC" = "$2" ]; then
        pass "$1 (exit $RC)"
    else
        fail "$1: expected exit $2, got $RC; output:"
        printf '%s\n' "$OUT" | tail -n 30 | sed 's/^/        | /'
    fi
}

# check_out DESCRIPTION REGEX: the last run_cmd's output matches REGEX (grep -E).
check_out() {
    if printf '%s\n' "$OUT" | grep -Eq -- "$2"; then
        pass "$1"
    else
        fail "$1: output does not match /$2/; output:"
        printf '%s\n' "$OUT" | tail -n 30 | sed 's/^/        | /'
    fi
}

# run_cmd COMMAND...: runs it, keeping its combined output in OUT and exit status in RC.
run_cmd() {
    OUT=$("$@" 2>&1) && RC=0 || RC=$?
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# listening PORT: something accepts TCP connections on 127.0.0.1:PORT.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
    [ -n "$1" ] && [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# wait_gone PID [SECONDS]: waits until the process has gone.
wait_gone() {
    local _
    for _ in $(seq 1 $((${2:-5} * 10))); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

# exe_of PID: the executable the process runs.
exe_of() {
    readlink "/proc/$1/exe" 2>/dev/null || true
}

# check_match DESCRIPTION REGEX STRING: STRING matches REGEX (grep -E, any line).
check_match() {
    if printf '%s\n' "$3" | grep -Eq -- "$2"; then
        pass "$1"
    else
        fail "$1: [$3] does not match /$2/"
    fi
}

# Writes DIR/NAME.conf (mode 0600) for a test daemon on loopback PORT, logging to
# DIR/NAME.log; URI is the node's libvirt URI (ignored for the master).
write_daemon_conf() {
    local name=$1 dir=$2 port=$3 uri=$4 conf=$2/$1.conf
    if [ "$name" = vmwatch-master ]; then
        printf 'listen=tcp://127.0.0.1:%s\nsecret=ABC123DEF456GHI789\nlog=%s\nstate_file=%s\npanel_command=/bin/true\n' \
            "$port" "$dir/$name.log" "$dir/state" >"$conf"
    else
        printf 'connect=tcp://127.0.0.1:%s\nsecret=ABC123DEF456GHI789\nnode_id=3\nuri=%s\nlog=%s\n' \
            "$port" "$uri" "$dir/$name.log" >"$conf"
    fi
    chmod 600 "$conf"
}
