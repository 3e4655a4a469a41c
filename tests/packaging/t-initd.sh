# shellcheck shell=bash
# The SysV init scripts, run for real against the release binaries.
#
# Debian has no /etc/rc.d/init.d/functions: the scripts source tests/packaging/functions,
# a minimal STAND-IN written for these tests (it says so at its top), through
# VMWATCH_INIT_FUNCTIONS; paths come from a sysconfig file of the test's own
# (VMWATCH_SYSCONFIG). Everything lives in a temporary directory; the daemons listen on
# loopback ports only; nothing under /etc/rc.d or /usr/local/mgr5 is touched.

# initd NAME SYSCONFIG ACTION: runs init.d/NAME as service(8) would (empty environment).
initd() {
    run_cmd env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
        VMWATCH_INIT_FUNCTIONS="$TESTS/functions" \
        VMWATCH_SYSCONFIG="$2" \
        VMWATCH_TEST_SUBSYS_DIR="$(dirname "$2")/lock" \
        VMWATCH_TEST_FUNCTIONS_LOG="$(dirname "$2")/functions.log" \
        bash "$TOP/init.d/$1" "$3"
}

# new_instance NAME DIR CONFIG: writes DIR/sysconfig pointing the script at DIR.
new_instance() {
    mkdir -p "$2/run" "$2/lock"
    cat >"$2/sysconfig" <<EOF
binary=$BIN_DIR/$1
config=$3
pidfile=$2/run/$1.pid
lockfile=$2/lock/$1
STOP_DELAY=5
EOF
}

pid_in() {
    cat "$1" 2>/dev/null || true
}

# lifecycle NAME DIR: the full start/status/reload/restart/stop round on a valid config.
# PORT_CHECK (a port) is asserted to be listening while the daemon runs, when set.
lifecycle() {
    local name=$1 dir=$2 sc=$2/sysconfig pidf=$2/run/$1.pid lockf=$2/lock/$1
    local pid1 pid2 pid3 pid4

    echo "  (init functions: STAND-IN tests/packaging/functions, not CentOS's own file)"
    initd "$name" "$sc" status
    check_rc "$name: status before start says stopped" 3

    initd "$name" "$sc" start
    check_rc "$name: start" 0
    pid1=$(pid_in "$pidf")
    check "$name: start wrote the pidfile with a live pid" pid_alive "$pid1"
    check_eq "$name: the pid is the daemon itself" "$BIN_DIR/$name" "$(exe_of "$pid1")"
    check "$name: start created the lockfile" test -f "$lockf"
    if [ -n "${PORT_CHECK:-}" ]; then
        check "$name: listening on 127.0.0.1:$PORT_CHECK once start returned" listening "$PORT_CHECK"
    fi
    check "$name: started through daemon --pidfile" grep -q "^daemon --pidfile $pidf " "$dir/functions.log"

    initd "$name" "$sc" start
    check_rc "$name: start when running" 0
    check_eq "$name: start when running leaves the same daemon" "$pid1" "$(pid_in "$pidf")"
    check_eq "$name: only one daemon runs" 1 "$(pgrep -x -f "$BIN_DIR/$name -c $(sed -n 's/^config=//p' "$sc") -p $pidf" | wc -l)"

    initd "$name" "$sc" status
    check_rc "$name: status while running" 0
    check_out "$name: status names the pid" "\\(pid $pid1\\) is running"

    initd "$name" "$sc" reload
    check_rc "$name: reload (SIGHUP)" 0
    sleep 0.3
    check "$name: the daemon survives SIGHUP" pid_alive "$pid1"
    check_eq "$name: reload keeps the same daemon" "$pid1" "$(pid_in "$pidf")"

    initd "$name" "$sc" restart
    check_rc "$name: restart" 0
    pid2=$(pid_in "$pidf")
    check "$name: restart stopped the old daemon" wait_gone "$pid1" 1
    check "$name: restart started a new daemon" pid_alive "$pid2"
    check "$name: the new daemon has a new pid" test "$pid2" != "$pid1"

    initd "$name" "$sc" try-restart
    check_rc "$name: try-restart while running" 0
    pid3=$(pid_in "$pidf")
    check "$name: try-restart replaced the daemon" test -n "$pid3" -a "$pid3" != "$pid2"
    check "$name: the try-restarted daemon runs" pid_alive "$pid3"

    initd "$name" "$sc" stop
    check_rc "$name: stop" 0
    check "$name: stop ended the daemon" wait_gone "$pid3" 1
    check "$name: stop removed the pidfile" test ! -e "$pidf"
    check "$name: stop removed the lockfile" test ! -e "$lockf"
    check "$name: stopped through killproc -p" grep -q "^killproc -p $pidf " "$dir/functions.log"

    initd "$name" "$sc" status
    check_rc "$name: status after stop says stopped" 3
    initd "$name" "$sc" stop
    check_rc "$name: stop when stopped" 0
    initd "$name" "$sc" reload
    check_rc "$name: reload when stopped says not running" 7
    initd "$name" "$sc" condrestart
    check_rc "$name: condrestart when stopped" 0
    check "$name: condrestart when stopped starts nothing" test ! -e "$pidf"
    initd "$name" "$sc" frobnicate
    check_rc "$name: unknown action" 2
    check_out "$name: unknown action prints the usage" "Usage: .*start\\|stop"

    # A daemon that died without cleaning up (SIGKILL).
    initd "$name" "$sc" start
    check_rc "$name: start again" 0
    pid4=$(pid_in "$pidf")
    kill -KILL "$pid4"
    wait_gone "$pid4" 2 || true
    initd "$name" "$sc" status
    check_rc "$name: status of a killed daemon: dead but pid file exists" 1
    rm -f "$pidf"
    initd "$name" "$sc" status
    check_rc "$name: status with only the lockfile left: dead but subsys locked" 2
    initd "$name" "$sc" start
    check_rc "$name: start after a crash" 0
    check "$name: start after a crash runs a daemon" pid_alive "$(pid_in "$pidf")"
    initd "$name" "$sc" stop
    check_rc "$name: stop after the crash round" 0
    # A pidfile naming another live process (its pid reused after a crash): not ours.
    sleep 300 >/dev/null 2>&1 &
    local other=$!
    echo "$other" >"$pidf"
    initd "$name" "$sc" status
    check_rc "$name: status, pidfile naming another process: dead but pid file exists" 1
    initd "$name" "$sc" reload
    check_rc "$name: reload, pidfile naming another process: not running" 7
    echo "$other" >"$pidf"
    initd "$name" "$sc" stop
    check_rc "$name: stop, pidfile naming another process" 0
    check "$name: stop left the other process alone" pid_alive "$other"
    echo "$other" >"$pidf"
    initd "$name" "$sc" start
    check_rc "$name: start, pidfile naming another process" 0
    check_eq "$name: ... started the daemon, not 'already running'" "$BIN_DIR/$name" "$(exe_of "$(pid_in "$pidf")")"
    initd "$name" "$sc" stop
    check_rc "$name: stop after the reused-pid round" 0
    check "$name: the other process survived start, stop and reload" pid_alive "$other"
    kill "$other"
}

# bad_config NAME DIR GOOD_CONFIG BAD_CONFIG_TEXT: an invalid file refuses start and
# restart, and restart leaves a running daemon alone.
bad_config() {
    local name=$1 dir=$2 good=$3 sc=$2/sysconfig pidf=$2/run/$1.pid bad=$2/bad.conf pid
    printf '%s\n' "$4" >"$bad"
    chmod 600 "$bad"

    sed -i "s|^config=.*|config=$bad|" "$sc"
    initd "$name" "$sc" start
    check_rc "$name: start with an invalid config: not configured" 6
    check_out "$name: start shows what -t found, with the file name" "$bad"
    check "$name: invalid config: no daemon, no pidfile" test ! -e "$pidf"
    check "$name: invalid config: no lockfile" test ! -e "$dir/lock/$name"

    sed -i "s|^config=.*|config=$good|" "$sc"
    initd "$name" "$sc" start
    check_rc "$name: start with the good config" 0
    pid=$(pid_in "$pidf")
    sed -i "s|^config=.*|config=$bad|" "$sc"
    initd "$name" "$sc" restart
    check_rc "$name: restart with an invalid config refuses" 6
    check "$name: ... and leaves the running daemon alone" pid_alive "$pid"
    check_eq "$name: ... same pidfile" "$pid" "$(pid_in "$pidf")"
    sed -i "s|^config=.*|config=$good|" "$sc"
    initd "$name" "$sc" stop
    check_rc "$name: stop" 0

    sed -i "s|^config=.*|config=$dir/absent.conf|" "$sc"
    initd "$name" "$sc" start
    check_rc "$name: start without a config file: not configured" 6
    sed -i "s|^config=.*|config=$good|" "$sc"

    sed -i "s|^binary=.*|binary=$dir/absent-binary|" "$sc"
    initd "$name" "$sc" start
    check_rc "$name: start without the binary: not installed" 5
    sed -i "s|^binary=.*|binary=$BIN_DIR/$name|" "$sc"
}

test_initd_master() {
    local dir=$WORK/initd-master port conf
    mkdir -p "$dir"
    port=$(free_port)
    conf=$dir/master.conf
    cat >"$conf" <<EOF
listen=tcp://127.0.0.1:$port
secret=ABC123DEF456GHI789
log=$dir/master.log
state_file=$dir/state
panel_command=/bin/true
EOF
    chmod 600 "$conf"
    new_instance vmwatch-master "$dir" "$conf"
    PORT_CHECK=$port lifecycle vmwatch-master "$dir"

    bad_config vmwatch-master "$dir" "$conf" "listen=not-an-endpoint
state_file=$dir/state
log=$dir/master.log"

    # disabled=yes: start says so and succeeds without starting anything.
    local dconf=$dir/disabled.conf sc=$dir/sysconfig pidf=$dir/run/vmwatch-master.pid
    { echo "disabled=yes"; cat "$conf"; } >"$dconf"
    chmod 600 "$dconf"
    sed -i "s|^config=.*|config=$dconf|" "$sc"
    initd vmwatch-master "$sc" start
    check_rc "vmwatch-master: start with disabled=yes succeeds" 0
    check_out "vmwatch-master: start with disabled=yes says the service is disabled" "disabled"
    check "vmwatch-master: disabled: no pidfile" test ! -e "$pidf"
    check "vmwatch-master: disabled: no lockfile" test ! -e "$dir/lock/vmwatch-master"
    check "vmwatch-master: disabled: nothing listens on the port" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
    initd vmwatch-master "$sc" status
    check_rc "vmwatch-master: disabled: status says stopped" 3

    # The sample the RPM ships (disabled=yes, no secret yet) behaves the same.
    cp "$TOP/packaging/conf/vmwatch-master.conf" "$dir/sample.conf"
    chmod 600 "$dir/sample.conf"
    sed -i "s|^config=.*|config=$dir/sample.conf|" "$sc"
    initd vmwatch-master "$sc" start
    check_rc "vmwatch-master: start with the packaged sample config (disabled) succeeds" 0
    check_out "vmwatch-master: ... and says it is disabled" "disabled"
    check "vmwatch-master: ... without starting" test ! -e "$pidf"

    # disabled=yes while running: restart stops it and does not start it again.
    sed -i "s|^config=.*|config=$conf|" "$sc"
    initd vmwatch-master "$sc" start
    check_rc "vmwatch-master: start enabled again" 0
    local pid
    pid=$(pid_in "$pidf")
    sed -i "s|^config=.*|config=$dconf|" "$sc"
    initd vmwatch-master "$sc" restart
    check_rc "vmwatch-master: restart after the panel set disabled=yes" 0
    check "vmwatch-master: ... stopped the running master" wait_gone "$pid" 1
    check "vmwatch-master: ... and started none" test ! -e "$pidf"
    sed -i "s|^config=.*|config=$conf|" "$sc"

    # A runtime failure (the port is taken by a running master): start fails, no lockfile.
    initd vmwatch-master "$sc" start
    check_rc "vmwatch-master: start (first instance)" 0
    pid=$(pid_in "$pidf")
    local dir2=$WORK/initd-master2
    mkdir -p "$dir2"
    sed "s|^log=.*|log=$dir2/master.log|; s|^state_file=.*|state_file=$dir2/state|" "$conf" >"$dir2/master.conf"
    chmod 600 "$dir2/master.conf"
    new_instance vmwatch-master "$dir2" "$dir2/master.conf"
    initd vmwatch-master "$dir2/sysconfig" start
    check_rc "vmwatch-master: second master on a taken port: start fails" 1
    check "vmwatch-master: ... leaves no lockfile" test ! -e "$dir2/lock/vmwatch-master"
    check "vmwatch-master: ... leaves no pidfile" test ! -e "$dir2/run/vmwatch-master.pid"
    check "vmwatch-master: ... and the first master still runs" pid_alive "$pid"
    initd vmwatch-master "$sc" stop
    check_rc "vmwatch-master: final stop" 0
}

test_initd_node() {
    local dir=$WORK/initd-node port conf
    mkdir -p "$dir"
    port=$(free_port)
    conf=$dir/node.conf
    # The libvirt test driver runs in-process: no libvirtd needed. No master listens on
    # the port: ZeroMQ connects lazily, the node runs regardless.
    cat >"$conf" <<EOF
connect=tcp://127.0.0.1:$port
secret=ABC123DEF456GHI789
node_id=7
uri=test:///default
log=$dir/node.log
EOF
    chmod 600 "$conf"
    new_instance vmwatch-node "$dir" "$conf"
    lifecycle vmwatch-node "$dir"

    bad_config vmwatch-node "$dir" "$conf" "connect=tcp://127.0.0.1:$port
log=$dir/node.log"

    # libvirt cannot be reached: the daemon fails to start, and so does the script.
    local sc=$dir/sysconfig
    sed "s|^uri=.*|uri=test:///$dir/no-such-libvirt-driver-file.xml|" "$conf" >"$dir/nolibvirt.conf"
    chmod 600 "$dir/nolibvirt.conf"
    sed -i "s|^config=.*|config=$dir/nolibvirt.conf|" "$sc"
    initd vmwatch-node "$sc" start
    check_rc "vmwatch-node: start without a reachable libvirt fails" 1
    check "vmwatch-node: ... leaves no lockfile" test ! -e "$dir/lock/vmwatch-node"
    check "vmwatch-node: ... leaves no pidfile" test ! -e "$dir/run/vmwatch-node.pid"
    sed -i "s|^config=.*|config=$conf|" "$sc"
}
