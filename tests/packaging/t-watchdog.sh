# shellcheck shell=bash
# The SysV watchdog (packaging/vmwatch-watchdog, issue 9 item 2), run for real: real init
# scripts (with the STAND-IN functions file, as in t-initd.sh), real daemons on loopback,
# and its syslog lines read from a real syslog socket -- a unix datagram socket bound by a
# small listener of this test, which logger(1) writes to (-u) exactly as it writes to
# /dev/log. Time is injected (VMWATCH_WATCHDOG_NOW) for the 30-minute back-off; the
# 5-second recheck is waited for real.
#
# Uses the release binaries in dist/ when they are there (the full run builds them), else
# the debug ones in target/debug (built if missing), and says which.

# wd_run ARGS...: the watchdog as cron runs it (empty environment but for the test hooks).
wd_run() {
    run_cmd env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
        VMWATCH_WATCHDOG_INITD="$TOP/init.d" \
        VMWATCH_WATCHDOG_SYSCONFIG_DIR="$WD/sysconfig.d" \
        VMWATCH_WATCHDOG_STATE_DIR="$WD/state" \
        VMWATCH_WATCHDOG_SERVICE="$WD/service" \
        VMWATCH_WATCHDOG_SYSLOG_SOCKET="$WD/log.sock" \
        ${WD_NOW:+VMWATCH_WATCHDOG_NOW=$WD_NOW} \
        bash "$TOP/packaging/vmwatch-watchdog" "$@"
}

# wd_service NAME ACTION: what service(8) would run, for this test's instances.
wd_service() {
    run_cmd "$WD/service" "$1" "$2"
}

# wd_syslog_since N: syslog lines received after the first N.
wd_syslog_since() {
    tail -n +"$(($1 + 1))" "$WD/syslog.txt"
}

wd_syslog_count() {
    wc -l <"$WD/syslog.txt"
}

wd_pid() {
    cat "$WD/$1/run/$1.pid" 2>/dev/null || true
}

# wd_instance NAME CONFIG_TEXT: an instance dir with its config and sysconfig.
wd_instance() {
    local name=$1 d=$WD/$1
    mkdir -p "$d/run" "$d/lock" "$WD/sysconfig.d"
    printf '%s\n' "$2" >"$d/$name.conf"
    chmod 600 "$d/$name.conf"
    cat >"$WD/sysconfig.d/$name" <<EOF
binary=$WD_BIN/$name
config=$d/$name.conf
pidfile=$d/run/$name.pid
lockfile=$d/lock/$name
STOP_DELAY=5
EOF
}

# wd_killed NAME: SIGKILL the running daemon; the watchdog restarts it, says so in syslog.
wd_killed() {
    local name=$1 pid1 pid2 n start
    pid1=$(wd_pid "$name")
    check "$name: running before the kill" pid_alive "$pid1"
    kill -KILL "$pid1"
    # Under load a killed daemon can take a moment to go (a thread in the middle of I/O).
    check "$name: the killed daemon has gone" wait_gone "$pid1" 30
    n=$(wd_syslog_count)
    start=$SECONDS
    wd_run "$name"
    check_rc "$name killed: the watchdog run" 0
    check "$name killed: rechecked for 5 s before restarting" test $((SECONDS - start)) -ge 5
    pid2=$(wd_pid "$name")
    check "$name killed: restarted (new pid $pid2)" pid_alive "$pid2"
    check_eq "$name killed: the new process is the daemon" "$WD_BIN/$name" "$(exe_of "$pid2")"
    check "$name killed: through the init script (daemon --pidfile)" \
        grep -q "^daemon --pidfile $WD/$name/run/$name.pid " "$WD/$name/functions.log"
    wd_wait_syslog "$n" 2
    WD_SEEN=$(wd_syslog_since "$n")
    # daemon.warning is <28>, daemon.notice <29>.
    check_match "$name killed: syslog: warning that it is down, before the restart" \
        "^<28>.*vmwatch-watchdog\\[[0-9]+\\]: $name is not running \\(pid $pid1 from .* is not running\\); restarting it" "$WD_SEEN"
    check_match "$name killed: syslog: notice that it was restarted, with the new pid" \
        "^<29>.*vmwatch-watchdog\\[[0-9]+\\]: $name restarted \\(pid $pid2\\)" "$WD_SEEN"
    check_eq "$name killed: both lines carry the same pid (one run)" 1 \
        "$(printf '%s\n' "$WD_SEEN" | grep -Eo 'vmwatch-watchdog\[[0-9]+\]' | sort -u | wc -l)"
    printf '%s\n' "$WD_SEEN" | sed 's/^/        syslog| /'
}

wd_no_master() {
    ! pgrep -f "^$WD_BIN/vmwatch-master -c $WD/" >/dev/null
}

# wd_wait_syslog N COUNT: waits (5 s at most) until COUNT more lines arrived after N.
wd_wait_syslog() {
    local _
    for _ in $(seq 1 50); do
        [ "$(wd_syslog_count)" -ge $(($1 + $2)) ] && return 0
        sleep 0.1
    done
    return 0
}

# Everything the group started goes when it ends, whatever happens: the listener and the
# daemons (found by their pidfiles and checked to be ours).
wd_cleanup() {
    local f pid
    [ -n "${WD_LISTENER:-}" ] && kill "$WD_LISTENER" 2>/dev/null
    for f in "$WD"/*/run/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        case $(exe_of "$pid") in
            "$WD_BIN"/vmwatch-*) kill -TERM "$pid" 2>/dev/null ;;
        esac
    done
    return 0
}

test_watchdog() {
    WD=$WORK/watchdog
    mkdir -p "$WD"
    local py=/usr/bin/python3 node_port master_port n pid t0
    [ -x "$py" ] || py=python3
    check "tools for the watchdog tests are installed" bash "$TOP/packaging/ensure-debs.sh" \
        shellcheck mandoc groff-base bsdutils util-linux procps

    # Static checks: the script as it ships, its man page, its cron files.
    check "shellcheck vmwatch-watchdog (all severities)" shellcheck -S style "$TOP/packaging/vmwatch-watchdog"
    check "vmwatch-watchdog parses as POSIX-era bash (bash -n)" bash -n "$TOP/packaging/vmwatch-watchdog"
    run_cmd mandoc -T lint -W style "$TOP/docs/vmwatch-watchdog.8"
    check_eq "docs/vmwatch-watchdog.8: mandoc -T lint -W style is silent" "0:" "$RC:$OUT"
    run_cmd groff -man -ww -z "$TOP/docs/vmwatch-watchdog.8"
    check_eq "docs/vmwatch-watchdog.8: groff -man -ww -z is silent" "0:" "$RC:$OUT"
    local section opt
    for section in NAME SYNOPSIS DESCRIPTION OPTIONS SIGNALS ENVIRONMENT FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
        check "docs/vmwatch-watchdog.8 has a $section section" grep -q "^\\.SH \"\\?$section\"\\?\$" "$TOP/docs/vmwatch-watchdog.8"
    done
    for opt in $(bash "$TOP/packaging/vmwatch-watchdog" -h | grep -Eo '^  -[a-z]'); do
        check "docs/vmwatch-watchdog.8 documents $opt" grep -q "^\\.B \\\\-${opt#-}\$" "$TOP/docs/vmwatch-watchdog.8"
    done
    for n in master node; do
        check "cron file vmwatch-$n-watchdog: every 3 minutes, as root, this service" \
            grep -qx "\\*/3 \\* \\* \\* \\* root /usr/local/mgr5/libexec/vmwatch/vmwatch-watchdog vmwatch-$n" "$TOP/packaging/cron/vmwatch-$n-watchdog"
    done
    # The el6 packages carry it, the el7 ones (systemd restarts the daemons) do not.
    local rpm files
    for n in master node; do
        for rpm in "$BIN_DIR"/vmwatch-$n-*.el6.x86_64.rpm "$BIN_DIR"/vmwatch-$n-*.el7.x86_64.rpm; do
            if [ ! -f "$rpm" ]; then
                skip "RPM contents: no $rpm (run make rpm, or the full packaging tests)"
                continue
            fi
            files=$(rpm -qlp "$rpm" 2>/dev/null)
            case $rpm in
                *.el6.*)
                    check_match "$(basename "$rpm") ships the watchdog" '^/usr/local/mgr5/libexec/vmwatch/vmwatch-watchdog$' "$files"
                    check_match "$(basename "$rpm") ships its cron file" "^/etc/cron.d/vmwatch-$n-watchdog\$" "$files"
                    check_match "$(basename "$rpm") ships the watchdog's man page" '^/usr/share/man/man8/vmwatch-watchdog.8.gz$' "$files"
                    ;;
                *)
                    check "$(basename "$rpm") ships no watchdog and no cron file" \
                        bash -c "! printf '%s\n' \"\$1\" | grep -Eq 'watchdog|cron'" _ "$files"
                    ;;
            esac
        done
    done

    run_cmd bash "$TOP/packaging/vmwatch-watchdog" vmwatch-frob
    check_rc "an unknown service is a usage error" 2

    # The binaries the init scripts run.
    if [ -x "$BIN_DIR/vmwatch-master" ] && [ -x "$BIN_DIR/vmwatch-node" ]; then
        WD_BIN=$BIN_DIR
    else
        WD_BIN=$TOP/target/debug
        if [ ! -x "$WD_BIN/vmwatch-node" ] || [ ! -x "$WD_BIN/vmwatch-master" ]; then
            (cd "$TOP" && cargo build --bins -q) || true
        fi
    fi
    echo "  (binaries: $WD_BIN; init functions: STAND-IN tests/packaging/functions)"

    # service(8) for our instances: the real init scripts, empty environment.
    cat >"$WD/service" <<EOF
#!/bin/bash
d=$WD/\$1
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \\
    VMWATCH_INIT_FUNCTIONS="$TESTS/functions" VMWATCH_SYSCONFIG="$WD/sysconfig.d/\$1" \\
    VMWATCH_TEST_SUBSYS_DIR="\$d/lock" VMWATCH_TEST_FUNCTIONS_LOG="\$d/functions.log" \\
    bash "$TOP/init.d/\$1" "\$2"
EOF
    chmod 755 "$WD/service"

    # The syslog socket: every datagram becomes one line of syslog.txt.
    : >"$WD/syslog.txt"
    "$py" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    while True:
        data = s.recv(65536)
        out.write(data.decode("utf-8", "replace").rstrip("\n").replace("\n", " ") + "\n")
        out.flush()
' "$WD/log.sock" "$WD/syslog.txt" </dev/null >/dev/null 2>&1 &
    WD_LISTENER=$!
    trap wd_cleanup EXIT
    for _ in $(seq 1 50); do [ -S "$WD/log.sock" ] && break; sleep 0.1; done
    check "the test's syslog socket is up" test -S "$WD/log.sock"
    logger -u "$WD/log.sock" -t wd-selftest -p daemon.info "hello"
    wd_wait_syslog 0 1
    check "logger(1) reaches the test's syslog socket" grep -q 'wd-selftest.*hello' "$WD/syslog.txt"

    node_port=$(free_port)
    master_port=$(free_port)
    wd_instance vmwatch-node "connect=tcp://127.0.0.1:$node_port
secret=ABC123DEF456GHI789
node_id=7
uri=test:///default
syslog=no
log=$WD/vmwatch-node/node.log"
    wd_instance vmwatch-master "listen=tcp://127.0.0.1:$master_port
secret=ABC123DEF456GHI789
syslog=no
log=$WD/vmwatch-master/master.log
state_file=$WD/vmwatch-master/state
panel_command=/bin/true"

    # 1. Running: nothing to do, nothing said.
    wd_service vmwatch-node start
    check_rc "vmwatch-node: started through its init script" 0
    wd_service vmwatch-master start
    check_rc "vmwatch-master: started through its init script" 0
    pid=$(wd_pid vmwatch-node)
    n=$(wd_syslog_count)
    wd_run
    check_rc "both running: the watchdog (both services) exits 0" 0
    check_eq "both running: the node was left as it was" "$pid" "$(wd_pid vmwatch-node)"
    check_eq "both running: no syslog line" "$n" "$(wd_syslog_count)"

    # 2. Killed: restarted, and said so.
    wd_killed vmwatch-node
    wd_killed vmwatch-master

    # 3. Stopped by an admin: left alone; `start` re-arms it.
    wd_service vmwatch-node stop
    check_rc "vmwatch-node: service stop" 0
    n=$(wd_syslog_count)
    wd_run vmwatch-node
    check_rc "admin-stopped: the watchdog run" 0
    check "admin-stopped: not started again" test ! -e "$WD/vmwatch-node/run/vmwatch-node.pid"
    check_eq "admin-stopped: no syslog line" "$n" "$(wd_syslog_count)"
    wd_run -v vmwatch-node
    check_out "admin-stopped: -v says why it is left alone" "stopped on purpose"
    wd_service vmwatch-node start
    check_rc "vmwatch-node: service start re-arms the watchdog" 0
    wd_killed vmwatch-node

    # 4. The restart fails: a syslog alert, then 30 minutes of peace (time injected).
    t0=$(date +%s)
    pid=$(wd_pid vmwatch-node)
    sed -i "s|^config=.*|config=$WD/vmwatch-node/broken.conf|" "$WD/sysconfig.d/vmwatch-node"
    printf 'connect=nowhere\n' >"$WD/vmwatch-node/broken.conf"
    chmod 600 "$WD/vmwatch-node/broken.conf"
    kill -KILL "$pid"
    check "the killed daemon has gone" wait_gone "$pid" 30
    n=$(wd_syslog_count)
    WD_NOW=$t0 wd_run vmwatch-node
    check_rc "restart fails: the watchdog exits 1" 1
    wd_wait_syslog "$n" 2
    WD_SEEN=$(wd_syslog_since "$n")
    check_match "restart fails: syslog: warning that it is down" "^<28>.*vmwatch-node is not running" "$WD_SEEN"
    # daemon.alert is <25>.
    check_match "restart fails: syslog: alert naming the exit status, the reason and the back-off" \
        "^<25>.*vmwatch-watchdog\\[[0-9]+\\]: vmwatch-node: restart failed \\(exit 6: .*invalid.*\\); no new attempt for 30 minutes" "$WD_SEEN"
    printf '%s\n' "$WD_SEEN" | sed 's/^/        syslog| /'
    check "restart fails: no daemon" test -z "$(wd_pid vmwatch-node)"
    check "restart fails: the state is one small file" test "$(stat -c %s "$WD/state/vmwatch-node")" -lt 64
    # Repaired, but within the back-off: left alone, silently.
    sed -i "s|^config=.*|config=$WD/vmwatch-node/vmwatch-node.conf|" "$WD/sysconfig.d/vmwatch-node"
    n=$(wd_syslog_count)
    local starts
    starts=$(grep -c '^daemon ' "$WD/vmwatch-node/functions.log")
    WD_NOW=$((t0 + 60)) wd_run vmwatch-node
    check_rc "back-off (+1 min): exit 1, still down" 1
    WD_NOW=$((t0 + 1799)) wd_run vmwatch-node
    check_rc "back-off (+29:59): exit 1, still down" 1
    check_eq "back-off: no start attempted" "$starts" "$(grep -c '^daemon ' "$WD/vmwatch-node/functions.log")"
    check_eq "back-off: no syslog line" "$n" "$(wd_syslog_count)"
    check "back-off: no daemon" test -z "$(wd_pid vmwatch-node)"
    # 30 minutes later: tried again, and it works.
    WD_NOW=$((t0 + 1800)) wd_run vmwatch-node
    check_rc "back-off over (+30:00): restarted" 0
    check "back-off over: the daemon runs" pid_alive "$(wd_pid vmwatch-node)"
    wd_wait_syslog "$n" 2
    check_match "back-off over: syslog says it was restarted" "<29>.*vmwatch-node restarted" "$(wd_syslog_since "$n")"
    check "back-off over: the failure is forgotten (no state file)" test ! -e "$WD/state/vmwatch-node"
    # A failure recorded in the future (the clock went back, e.g. over a reboot) does not
    # hold the service back for longer than the back-off.
    echo "restart_failed_at=$((t0 + 86400))" >"$WD/state/vmwatch-node"
    pid=$(wd_pid vmwatch-node)
    kill -KILL "$pid"
    check "the killed daemon has gone" wait_gone "$pid" 30
    WD_NOW=$t0 wd_run vmwatch-node
    check_rc "a back-off deadline from a clock that went back is ignored: restarted" 0
    check "... the daemon runs" pid_alive "$(wd_pid vmwatch-node)"

    # A pidfile whose pid now belongs to another process (pid reuse after a crash): that
    # process is not taken for the daemon, and is not touched.
    pid=$(wd_pid vmwatch-node)
    kill -KILL "$pid"
    check "the killed daemon has gone" wait_gone "$pid" 30
    sleep 300 >/dev/null 2>&1 &
    local other=$!
    echo "$other" >"$WD/vmwatch-node/run/vmwatch-node.pid"
    # A dry run says what it would do and does nothing.
    n=$(wd_syslog_count)
    wd_run -n vmwatch-node
    check_rc "dry run with the daemon down: exit 1" 1
    check_eq "dry run: the pidfile is untouched" "$other" "$(wd_pid vmwatch-node)"
    wd_wait_syslog "$n" 1
    check_match "dry run: syslog says it would restart, and why" \
        "^<28>.*vmwatch-node is not running \\(pid $other from .* is [^ ]*sleep, not .*\\); would restart it \\(dry run\\)" "$(wd_syslog_since "$n")"
    wd_run vmwatch-node
    check_rc "pid reused by another process: restarted" 0
    check "pid reused: the daemon runs" test "$(exe_of "$(wd_pid vmwatch-node)")" = "$WD_BIN/vmwatch-node"
    check "pid reused: the other process was left alone" pid_alive "$other"
    kill "$other"

    # A daemon started by hand while the watchdog decides (between its last check and its
    # restart): its pidfile stays, and no second daemon is started. The window is made
    # certain by a logger(1) in front of the real one, which starts the daemon by hand when
    # the watchdog says "restarting it" (the watchdog's last words before restarting).
    pid=$(wd_pid vmwatch-node)
    kill -KILL "$pid"
    check "the killed daemon has gone" wait_gone "$pid" 30
    mkdir -p "$WD/shim"
    {
        echo '#!/bin/bash'
        echo 'case "$*" in'
        echo "    *'restarting it'*) '$WD_BIN/vmwatch-node' -c '$WD/vmwatch-node/vmwatch-node.conf' -p '$WD/vmwatch-node/run/vmwatch-node.pid' >/dev/null 2>&1 ;;"
        echo 'esac'
        echo 'exec /usr/bin/logger "$@"'
    } >"$WD/shim/logger"
    chmod 755 "$WD/shim/logger"
    run_cmd env -i PATH="$WD/shim:/usr/sbin:/usr/bin:/sbin:/bin" LANG=C \
        VMWATCH_WATCHDOG_INITD="$TOP/init.d" \
        VMWATCH_WATCHDOG_SYSCONFIG_DIR="$WD/sysconfig.d" \
        VMWATCH_WATCHDOG_STATE_DIR="$WD/state" \
        VMWATCH_WATCHDOG_SERVICE="$WD/service" \
        VMWATCH_WATCHDOG_SYSLOG_SOCKET="$WD/log.sock" \
        bash "$TOP/packaging/vmwatch-watchdog" vmwatch-node
    check_rc "started by hand meanwhile: the watchdog run succeeds" 0
    pid=$(wd_pid vmwatch-node)
    check_eq "started by hand meanwhile: its pidfile is kept and names the daemon" "$WD_BIN/vmwatch-node" "$(exe_of "$pid")"
    check_eq "started by hand meanwhile: one daemon runs" 1 "$(pgrep -c -f "^$WD_BIN/vmwatch-node -c $WD/vmwatch-node/")"

    # 5. disabled=yes (the panel turned the master off): left alone, lockfile or not.
    pid=$(wd_pid vmwatch-master)
    kill -KILL "$pid"
    check "the killed daemon has gone" wait_gone "$pid" 30
    sed -i '1i disabled=yes' "$WD/vmwatch-master/vmwatch-master.conf"
    check "disabled: the lockfile still says it should run" test -e "$WD/vmwatch-master/lock/vmwatch-master"
    n=$(wd_syslog_count)
    starts=$(grep -c '^daemon ' "$WD/vmwatch-master/functions.log")
    wd_run vmwatch-master
    check_rc "disabled=yes: the watchdog run" 0
    check_eq "disabled=yes: no start attempted" "$starts" "$(grep -c '^daemon ' "$WD/vmwatch-master/functions.log")"
    check "disabled=yes: no master of this test runs" wd_no_master
    check_eq "disabled=yes: no syslog line" "$n" "$(wd_syslog_count)"

    # The state never grows: one line per service at most, and the lock.
    check_eq "state directory: only the lock and per-service files" "lock" "$(ls "$WD/state")"
    wd_service vmwatch-node stop
    check_rc "vmwatch-node: final stop" 0
}
