#!/usr/bin/env bash
# vmwatch demo: the whole chain on this machine, for a person new to the project.
#
#   libvirtd --event--> vmwatch-node --signed ZeroMQ--> vmwatch-master --> panel command
#
# Starts a master and a node on a loopback port in a temporary directory, with
# a demo "panel" that records what it is told; drives two tiny real QEMU
# guests through their lifecycle with virsh; shows what the panel received;
# and measures, for every step, how long after the node's libvirt callback,
# and after virsh returned, the panel command had the news. Everything it
# starts (daemons, guests, files) is removed at the end, also on failure or
# Ctrl-C.
#
# Run by `make demo` (after tests/support/setup-host.sh and cargo build --bins).
# VMWATCH_MASTER_BIN / VMWATCH_NODE_BIN select other binaries (release builds).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
master_bin=${VMWATCH_MASTER_BIN:-$repo/target/debug/vmwatch-master}
node_bin=${VMWATCH_NODE_BIN:-$repo/target/debug/vmwatch-node}
uri=qemu:///system
deadline=30 # seconds for any one thing to happen

for b in "$master_bin" "$node_bin"; do
    [ -x "$b" ] || { echo "demo: $b not found; run cargo build --bins (make demo does)" >&2; exit 1; }
done
virsh -q -c "$uri" version >/dev/null 2>&1 \
    || { echo "demo: libvirtd does not answer; run bash tests/support/setup-host.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/vmwatch-demo.XXXXXX)
main_pid=$$
master_pid='' node_pid='' watchdog_pid=''
guests=("vmwatch-demo-$main_pid-alpha" "vmwatch-demo-$main_pid-beta")
ok=no

say() { printf '%s\n' "$*"; }
now_ns() { date +%s%N; }

# Stops the daemons (found through their pidfiles, so this also works from
# the watchdog), removes the guests and the directory. Idempotent.
remove_everything() {
    local pids pid g
    pids=$(cat "$work"/master.pid "$work"/node.pid 2>/dev/null; echo $node_pid $master_pid)
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
    for pid in $pids; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    for g in "${guests[@]}"; do
        virsh -q -c "$uri" destroy "$g" >/dev/null 2>&1
        virsh -q -c "$uri" undefine "$g" >/dev/null 2>&1
    done
    rm -rf "$work"
}

cleanup() {
    set +e
    [ -z "$watchdog_pid" ] || kill "$watchdog_pid" 2>/dev/null
    if [ "$ok" != yes ]; then
        say "" "demo failed; the last lines of the logs:"
        for f in "$work"/master.log "$work"/node.log; do
            [ -f "$f" ] && { say "--- $f"; tail -n 15 "$f"; }
        done
    fi
    remove_everything
    for pid in $node_pid $master_pid; do wait "$pid" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Second line of defence: should this shell die without running its EXIT
# trap (SIGKILL, or bash killed while in a command substitution), a watchdog
# removes everything once it is gone.
(
    trap - EXIT INT TERM
    while kill -0 "$main_pid" 2>/dev/null; do sleep 1; done
    set +e
    remove_everything
) </dev/null >/dev/null 2>&1 &
watchdog_pid=$!

# --- the demo panel: appends "ARRIVAL_NS LINE" for every update it receives
cat >"$work/panel.sh" <<EOF
#!/bin/sh
t=\$(date +%s%N)
sed "s/^/\$t /" >> '$work/panel.log'
EOF
chmod 755 "$work/panel.sh"
: >"$work/panel.log"

# --- configuration, as the panel would write it (plus test-friendly paths)
port=
for _ in $(seq 50); do # a loopback port nobody listens on
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free loopback port found" >&2; exit 1; }
secret=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Z0-9' | head -c 20)
[ ${#secret} -ge 8 ] || secret=DEMOSECRET0123456789
umask 077
cat >"$work/master.conf" <<EOF
listen=tcp://127.0.0.1:$port
secret=$secret
log=$work/master.log
syslog=no
panel_command=$work/panel.sh
state_file=$work/master.state
EOF
cat >"$work/node.conf" <<EOF
connect=tcp://127.0.0.1:$port
secret=$secret
node_id=1
uri=$uri
log=$work/node.log
syslog=no
stats=no
EOF
umask 022

wait_for() { # wait_for DESCRIPTION COMMAND...: polls up to $deadline s
    local what=$1; shift
    local end=$(( $(date +%s) + deadline ))
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || { echo "demo: timed out waiting for $what" >&2; return 1; }
        sleep 0.02
    done
}

"$master_bin" -f -c "$work/master.conf" -p "$work/master.pid" 2>/dev/null &
master_pid=$!
wait_for "the master to listen" grep -qs "listening on" "$work/master.log"
"$node_bin" -f -c "$work/node.conf" -p "$work/node.pid" 2>/dev/null &
node_pid=$!
wait_for "the node to connect" grep -qs "connected to the master" "$work/node.log"

# --- two tiny guests: 16 MiB, a sparse raw disk, the test firmware
# (tests/support/guest-firmware.S: boots in milliseconds, powers off on the
# ACPI power button, writes R on its serial port when ready).
rom=$work/guest-firmware.rom
head -c 65536 /dev/zero | tr '\0' '\377' >"$rom"
hex=$(tr -d ' \n' <"$repo/tests/support/guest-firmware.hex")
# shellcheck disable=SC2059 # the format is the firmware's bytes as \xHH
printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | dd of="$rom" conv=notrunc status=none
printf '\xea\x00\x00\x00\xf0' | dd of="$rom" bs=1 seek=65520 conv=notrunc status=none
if [ -e /dev/kvm ]; then virt=kvm; else virt=qemu; fi

make_guest() { # make_guest SHORTNAME -> prints the libvirt name
    local short=$1 name="vmwatch-demo-$main_pid-$1"
    truncate -s 16M "$work/$short.raw"
    cat >"$work/$short.xml" <<EOF
<domain type='$virt'>
  <name>$name</name>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>$rom</loader></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='$work/$short.raw'/><target dev='vda' bus='virtio'/></disk>
    <controller type='usb' model='none'/><memballoon model='none'/>
    <serial type='file'><source path='$work/$short.console' append='on'/><target port='0'/></serial>
  </devices>
</domain>
EOF
    echo "$name"
}

declare -A short_of uuid_of
for s in alpha beta; do
    n=$(make_guest "$s")
    short_of[$n]=$s
done

say "vmwatch demo"
say "  master   $master_bin, listening on tcp://127.0.0.1:$port (pid $master_pid)"
say "  node     $node_bin, node_id 1, watching $uri (pid $node_pid)"
say "  panel    $work/panel.sh records every update with its arrival time"
say "  guests   ${guests[*]} ($virt, 16 MiB, no OS: a 222-byte firmware)"
say ""
say "Each step: how long virsh took; then when the panel command had the line,"
say "counted from the node's libvirt callback (event) and from virsh returning (virsh)."
say ""
printf '%-28s %-26s %7s %7s %7s  %s\n' "step" "guest" "virsh" "event" "virsh" "the panel was told"
printf '%-28s %-26s %7s %7s %7s  %s\n' "" "" "took ms" "->panel" "->panel" ""

event_lat=()
virsh_lat=()
panel_count() { grep -cE -- "$1" "$work/panel.log" || true; }
has_more() { [ "$(panel_count "$1")" -gt "$2" ]; }
ready_count() { tr -cd R <"$work/${short_of[$1]}.console" 2>/dev/null | wc -c; }
is_ready() { [ "$(ready_count "$1")" -ge "$2" ]; }

# step LABEL GUEST PATTERN_SUFFIX VIRSH_ARGS...: runs virsh, waits for a new
# panel line matching "uuid=UUID ... PATTERN", prints the latencies.
step() {
    local label=$1 g=$2 want=$3; shift 3
    local key="uuid=${uuid_of[$g]}"
    local pattern="$key.*$want"
    [ "$want" = reboot ] && pattern="vmwatch.reboot.*$key"
    local before t0 t1 line arrived shown
    before=$(panel_count "$pattern")
    t0=$(now_ns)
    virsh -q -c "$uri" "$@" >/dev/null
    t1=$(now_ns)
    wait_for "$label of $g to reach the panel" has_more "$pattern" "$before"
    line=$(grep -E -- "$pattern" "$work/panel.log" | sed -n "$((before + 1))p")
    record "$label" "$g" "$t0" "$t1" "$line"
}

# record LABEL GUEST T0 T1 "ARRIVAL_NS LINE": prints a table row and keeps
# two latencies: from the node's libvirt callback (the line's since=/time=)
# to the panel, and from virsh returning to the panel.
record() {
    local label=$1 g=$2 t0=$3 t1=$4 line=$5 arrived event_ms shown
    arrived=${line%% *}
    event_ms=$(printf '%s' "$line" | sed -nE 's/.* (since|time)=([0-9]+).*/\2/p')
    event_lat+=($(( arrived / 1000000 - event_ms )))
    virsh_lat+=($(( (arrived - t1) / 1000000 )))
    shown=$(printf '%s' "${line#* }" | sed -E 's/^vmwatch\.domain .* state=([^ ]+) reason=([^ ]+) old=([^ ]+).*/state=\1 (reason \2, was \3)/; s/^vmwatch\.reboot .*/reboot/; s/%20/ /g')
    printf '%-28s %-26s %7d %7d %7d  %s\n' "$label" "$g" $(( (t1 - t0) / 1000000 )) \
        "${event_lat[-1]}" "${virsh_lat[-1]}" "$shown"
}

for g in "${guests[@]}"; do
    t0=$(now_ns)
    virsh -q -c "$uri" define "$work/${short_of[$g]}.xml" >/dev/null
    t1=$(now_ns)
    uuid_of[$g]=$(virsh -q -c "$uri" domuuid "$g")
    pattern="uuid=${uuid_of[$g]}.*state=shutoff"
    wait_for "define of $g to reach the panel" has_more "$pattern" 0
    record "virsh define" "$g" "$t0" "$t1" "$(grep -E -- "$pattern" "$work/panel.log" | head -n 1)"
done
for g in "${guests[@]}"; do step "virsh start" "$g" "state=running" start "$g"; done
for g in "${guests[@]}"; do step "virsh suspend" "$g" "state=paused" suspend "$g"; done
for g in "${guests[@]}"; do step "virsh resume" "$g" "state=running" resume "$g"; done
for g in "${guests[@]}"; do
    wait_for "$g's firmware to be ready" is_ready "$g" 1
    step "virsh reboot --mode acpi" "$g" reboot reboot --mode acpi "$g"
done
for g in "${guests[@]}"; do
    wait_for "$g to boot again" is_ready "$g" 2
    step "virsh reset" "$g" reboot reset "$g"
done
for g in "${guests[@]}"; do
    wait_for "$g to boot again" is_ready "$g" 3
    # shutdown, or shutoff if both reached the panel in one call
    step "virsh shutdown --mode acpi" "$g" "state=shut(down|off)" shutdown --mode acpi "$g"
done
for g in "${guests[@]}"; do
    wait_for "$g to power off" grep -q "uuid=${uuid_of[$g]}.*state=shutoff reason=shutdown" "$work/panel.log"
    step "virsh start" "$g" "state=running" start "$g"
done
for g in "${guests[@]}"; do step "virsh destroy" "$g" "state=shutoff reason=destroyed" destroy "$g"; done
for g in "${guests[@]}"; do step "virsh undefine" "$g" "state=undefined" undefine "$g"; done

say ""
say "What the panel command read on its standard input about the demo guests, in"
say "order of arrival (one call can carry several lines). A line looks like:"
say "  $(grep -m1 -E "vmwatch.domain .*uuid=${uuid_of[${guests[0]}]}" "$work/panel.log" | cut -d' ' -f2-)"
say ""
others=0
while IFS= read -r rec; do
    ts=${rec%% *}
    line=${rec#* }
    mine=no
    for g in "${guests[@]}"; do
        case $line in *"uuid=${uuid_of[$g]} "*) mine=yes ;; esac
    done
    case $line in vmwatch.node*) mine=yes ;; esac
    if [ "$mine" = no ]; then others=$((others + 1)); continue; fi
    when=$(date -d "@$((ts / 1000000000)).$(printf '%09d' $((ts % 1000000000)))" '+%H:%M:%S.%3N')
    what=$(printf '%s' "$line" | sed -E \
        -e 's/^vmwatch\.domain node=([^ ]+) uuid=[^ ]+ name=([^ ]+) state=([^ ]+) reason=([^ ]+) old=([^ ]+).*/node \1  \2  \5 -> \3  (\4)/' \
        -e 's/^vmwatch\.reboot node=([^ ]+) uuid=[^ ]+ name=([^ ]+).*/node \1  \2  rebooted/' \
        -e 's/^vmwatch\.node node=([^ ]+) status=([^ ]+).*/node \1 is \2/' -e 's/%20/ /g')
    printf '  %s  %s\n' "$when" "$what"
done <"$work/panel.log"
[ "$others" -eq 0 ] || say "  (and $others lines about other domains on this host, from the node's snapshot and their own events)"

say ""
stats() { # stats NUMBERS...: "min X ms, median Y ms, max Z ms"
    local sorted n
    sorted=$(printf '%s\n' "$@" | sort -n)
    n=$#
    printf 'min %s ms, median %s ms, max %s ms' "$(head -n 1 <<<"$sorted")" \
        "$(sed -n "$(( (n + 1) / 2 ))p" <<<"$sorted")" "$(tail -n 1 <<<"$sorted")"
}
say "Latency over ${#event_lat[@]} steps (the binaries above, on this machine):"
say "  libvirt event in the node -> panel command has the line: $(stats "${event_lat[@]}")"
say "  virsh returned            -> panel command has the line: $(stats "${virsh_lat[@]}")"
say "  (negative: the event reached the panel before virsh got libvirt's reply)"
say ""
say "The master registered every change in its log, e.g.:"
grep -E "domain vmwatch-demo-$main_pid-alpha" "$work/master.log" | head -n 4 | sed 's/^/  /'
ok=yes
