# shellcheck shell=bash
# Taking over from the panel's own packages (issue #11), in a throwaway RPM root where the
# services really run.
#
# TEST DOUBLES: the panel's packages vmmanager-kvm and vmmanager-pkg-vmnode are not at hand.
# tests/packaging/panel-double.spec builds stand-ins with their names, two versions each,
# owning an "original" daemon that says who it is, its init script (el6) or unit (el7) at
# the paths of the real ones. The sequence, for el6 and el7:
#   install the doubles, start their services -> install ours (no --force, no
#   --replacefiles) -> the services run ours -> upgrade the doubles -> still ours, not
#   restarted -> reinstall the doubles -> still ours -> upgrade ours -> still ours, the
#   panel's configs kept -> erase ours -> the doubles' files are back byte for byte (rpm -V,
#   cmp with their payload), the panel's configs too, and the original daemons run again.
#
# The root gets bash, busybox's tools, the libraries of bash and of the release node, /proc
# (mounted; unmounted at the end and by run.sh's cleanup) and the init functions STAND-IN
# (tests/packaging/functions) as /etc/rc.d/init.d/functions. service and systemctl there are
# STAND-INS too: each records its call, and then acts. service runs the script at
# /etc/rc.d/init.d/NAME as service(8) does (empty environment) and records whose script
# that was ([vmwatch], [panel]). systemctl starts and stops Type=simple units the way
# systemd does for these: the unit file from the first of /etc/systemd/system,
# /run/systemd/system, /usr/lib/systemd/system (systemd 219's order), ExecStartPre, then
# ExecStart with its main pid kept; it reads the file at each start (so daemon-reload is
# only recorded), and enable, disable and preset are only recorded.

PANEL_DOUBLES="vmwatch-master:vmmanager-kvm vmwatch-node:vmmanager-pkg-vmnode"
TAKEOVER_LIB=/usr/local/mgr5/libexec/vmwatch

# build_doubles OUTDIR: both test doubles, versions 5.0 and 5.1, el6 and el7.
build_doubles() {
    local out=$1 work pair svc pkg v dist
    work=$(mktemp -d "$WORK/doubles-build.XXXXXX")
    mkdir -p "$out"
    for pair in $PANEL_DOUBLES; do
        svc=${pair%%:*} pkg=${pair#*:}
        for v in 5.0 5.1; do
            for dist in el6 el7; do
                rpmbuild -bb "$TESTS/panel-double.spec" --quiet \
                    --dbpath "$work/db" \
                    --define "_topdir $work/$dist" \
                    --define "_tmppath $work" \
                    --define "_rpmdir $out" \
                    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
                    --define "_binary_payload w9.gzdio" \
                    --define "rhel ${dist#el}" --define "dist .$dist" \
                    --define "double_name $pkg" --define "double_service $svc" \
                    --define "double_version $v" || return 1
                test -f "$out/$pkg-$v-1.$dist.noarch.rpm" || return 1
            done
        done
    done
}

# runtime_root ROOT: what new_root gives, plus what running the services there needs.
runtime_root() {
    local r=$1 a lib
    install -m 0755 "$CACHE_DIR/busybox" "$r/bin/busybox"
    for a in cat chmod cmp cp env grep head kill ln ls mkdir mv readlink rm rmdir sed seq sleep sort tail touch tr true false; do
        ln -sf busybox "$r/bin/$a"
    done
    install -m 0755 "$(readlink -f /bin/bash)" "$r/bin/bash"
    for lib in $({ ldd /bin/bash; ldd "$BIN_DIR/vmwatch-node"; } | grep -o '/[^ ]*' | sort -u); do
        cp -L --parents "$lib" "$r" || return 1
    done
    mkdir -p "$r/proc" "$r/run" "$r/var/lock/subsys" "$r/usr/local/mgr5/etc" "$r/usr/local/mgr5/var"
    install -m 0644 "$TESTS/functions" "$r/etc/rc.d/init.d/functions"

    cat >"$r/sbin/service" <<'EOF'
#!/bin/sh
# STAND-IN for service(8) (packaging tests): records the call and whose init script is in
# place, then runs that script as service(8) does, with an empty environment.
s=/etc/rc.d/init.d/$1
case $(readlink "$s") in
    */libexec/vmwatch/init.d/"$1") who=vmwatch ;;
    "") if [ -f "$s" ]; then who=panel; else who=none; fi ;;
    *) who=other ;;
esac
echo "service $* [$who]" >>/var/log/standin.log
[ -x "$s" ] || { echo "$1: unrecognized service"; exit 1; }
exec env -i PATH=/sbin:/usr/sbin:/bin:/usr/bin LANG=C "$s" "$2"
EOF
    cat >"$r/usr/bin/systemctl" <<'EOF'
#!/bin/sh
# STAND-IN for systemctl (packaging tests): records the call; start, stop, restart,
# try-restart and is-active act as systemd does on Type=simple units (see t-takeover.sh).
echo "systemctl $*" >>/var/log/standin.log
state=/run/standin-systemd
mkdir -p "$state"
verb= unit=
for a in "$@"; do
    case $a in
        -*) ;;
        *) if [ -z "$verb" ]; then verb=$a; elif [ -z "$unit" ]; then unit=$a; fi ;;
    esac
done
unit_file() {
    for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system; do
        [ -f "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 1
}
active() {
    p=$(cat "$state/$1.pid" 2>/dev/null) && [ -n "$p" ] && [ -d "/proc/$p" ] &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status"
}
start() {
    active "$1" && return 0
    f=$(unit_file "$1") || { echo "Unit $1 not found." >&2; return 5; }
    pre=$(sed -n 's/^ExecStartPre=//p' "$f")
    if [ -n "$pre" ]; then OPTIONS= sh -c "$pre" >>"/var/log/standin-$1.out" 2>&1 || return 1; fi
    cmd=$(sed -n 's/^ExecStart=//p' "$f")
    OPTIONS= sh -c "exec $cmd" </dev/null >>"/var/log/standin-$1.out" 2>&1 &
    echo $! >"$state/$1.pid"
}
stop() {
    if active "$1"; then
        p=$(cat "$state/$1.pid")
        kill -TERM "$p"
        for _ in $(seq 1 100); do active "$1" || break; sleep 0.1; done
    fi
    rm -f "$state/$1.pid"
}
case $verb in
    start) start "$unit" ;;
    stop) stop "$unit" ;;
    restart) stop "$unit"; start "$unit" ;;
    try-restart) if active "$unit"; then stop "$unit"; start "$unit"; fi ;;
    is-active) active "$unit" ;;
esac
EOF
    chmod 0755 "$r/sbin/service" "$r/usr/bin/systemctl"
    mount -t proc proc "$r/proc"
}

# who_runs ROOT NAME: what runs as service NAME in ROOT, from /proc (every process whose
# root is ROOT): "vmwatch" for our release binary, or the test double's own words (its
# process name); one per process, sorted, joined with |.
who_runs() {
    local r=$1 name=$2 p exe arg0 out=
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$r" ] || continue
        grep -q '^State:[[:space:]]*Z' "$p/status" 2>/dev/null && continue
        exe=$(readlink "$p/exe" 2>/dev/null || true)
        arg0=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -n 1)
        case $exe in
            "$r$TAKEOVER_LIB/$name") out="$out|vmwatch"; continue ;;
            "$r$TAKEOVER_LIB/$name "*) out="$out|vmwatch $exe"; continue ;;
        esac
        case $arg0 in
            "original $name "*) out="$out|$arg0" ;;
        esac
    done
    printf '%s\n' "${out#|}" | tr '|' '\n' | sed '/^$/d' | sort | paste -sd '|' -
}

# await_who ROOT NAME EXPECTED: waits (up to 10 s) until who_runs says EXPECTED; prints
# what it says last.
await_who() {
    local w _
    for _ in $(seq 1 100); do
        w=$(who_runs "$1" "$2")
        [ "$w" = "$3" ] && break
        sleep 0.1
    done
    printf '%s\n' "$w"
}

# pids_of ROOT NAME: the pids of what runs as NAME in ROOT (to tell a restart).
pids_of() {
    local r=$1 name=$2 p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$r" ] || continue
        case "$(readlink "$p/exe" 2>/dev/null)|$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -n 1)" in
            "$r$TAKEOVER_LIB/$name"*"|"* | *"|original $name "*) echo "${p#/proc/}" ;;
        esac
    done | sort -n | paste -sd ' ' -
}

# takeover_stop ROOT: stops whatever runs in ROOT (through its service manager stand-in)
# and unmounts its /proc.
takeover_stop() {
    local r=$1 rhel=$2 svc
    if mountpoint -q "$r/proc"; then
        for svc in vmwatch-master vmwatch-node; do
            if [ "$rhel" = 6 ]; then
                chroot "$r" /sbin/service "$svc" stop >/dev/null 2>&1 || true
            else
                chroot "$r" /usr/bin/systemctl stop "$svc.service" >/dev/null 2>&1 || true
            fi
        done
        umount "$r/proc"
    fi
}

# panel_files DIST: every file the doubles own, as a path (el6 and el7 differ).
panel_files() {
    local svc
    for svc in vmwatch-master vmwatch-node; do
        echo "/usr/local/mgr5/sbin/$svc"
        if [ "$1" = el6 ]; then echo "/etc/rc.d/init.d/$svc"; else echo "/usr/lib/systemd/system/$svc.service"; fi
    done
}

test_takeover() {
    local version dist rhel r doubles=$WORK/doubles rpms2=$WORK/takeover-rpms2 conf2=$WORK/takeover-conf2
    local mgr=/usr/local/mgr5 lib=$TAKEOVER_LIB pair svc pkg f v port pids_before shared
    version=$(rpm_version)
    check "build the test doubles of vmmanager-kvm and vmmanager-pkg-vmnode (5.0, 5.1; el6, el7)" \
        build_doubles "$doubles"
    mkdir -p "$conf2"
    for f in vmwatch-master.conf vmwatch-node.conf; do
        { cat "$TOP/packaging/conf/$f"; echo "# (test: a default changed in release 2)"; } >"$conf2/$f"
    done
    check "build our release 2 (changed default configs) for the upgrade" \
        env VMWATCH_RPM_RELEASE=2 VMWATCH_RPM_CONF_DIR="$conf2" bash "$TOP/packaging/rpm/build-rpms.sh" "$rpms2"

    for dist in el6 el7; do
        rhel=${dist#el}
        local ours1=("$BIN_DIR/vmwatch-master-$version-1.$dist.x86_64.rpm" "$BIN_DIR/vmwatch-node-$version-1.$dist.x86_64.rpm")
        local ours2=("$rpms2/vmwatch-master-$version-2.$dist.x86_64.rpm" "$rpms2/vmwatch-node-$version-2.$dist.x86_64.rpm")
        local d50=("$doubles/vmmanager-kvm-5.0-1.$dist.noarch.rpm" "$doubles/vmmanager-pkg-vmnode-5.0-1.$dist.noarch.rpm")
        local d51=("$doubles/vmmanager-kvm-5.1-1.$dist.noarch.rpm" "$doubles/vmmanager-pkg-vmnode-5.1-1.$dist.noarch.rpm")
        if ! ls "${ours1[@]}" "${ours2[@]}" "${d50[@]}" "${d51[@]}" >/dev/null 2>&1; then
            fail "$dist: packages missing (ours in dist/, release 2, test doubles): skipping $dist"
            continue
        fi
        r=$WORK/takeover-$dist
        new_root "$r"
        check "$dist: the throwaway root can run the services (bash, tools, libraries, /proc)" runtime_root "$r"
        local rpmr=(rpm --root "$r" --dbpath /var/lib/rpm)

        # The doubles' payloads, to compare files on disk with, byte for byte.
        for v in 5.0 5.1; do
            mkdir -p "$WORK/payload-$dist-$v"
            for f in "$doubles"/vmmanager-*-"$v"-1."$dist".noarch.rpm; do
                (cd "$WORK/payload-$dist-$v" && "$CACHE_DIR/busybox" rpm2cpio "$f" | "$CACHE_DIR/busybox" cpio -idm 2>/dev/null)
            done
        done
        check "$dist: the 5.0 and 5.1 doubles differ in every file (so a restored file tells its version)" \
            bash -c "for f in \$(cd '$WORK/payload-$dist-5.1' && find . -type f); do ! cmp -s '$WORK/payload-$dist-5.0/'\$f '$WORK/payload-$dist-5.1/'\$f || exit 1; done"

        shared=$(comm -12 <(rpm -qpl "${ours1[@]}" "${ours2[@]}" 2>/dev/null | sort -u) <(rpm -qpl "${d50[@]}" "${d51[@]}" 2>/dev/null | sort -u))
        check_eq "$dist: our packages own no path that the panel's packages (doubles) own" "" "$shared"

        # --- the panel's packages (doubles) are installed; the panel configures and starts
        run_cmd "${rpmr[@]}" -i --nodeps "${d50[@]}"
        check_rc "$dist: rpm -i the test doubles vmmanager-kvm, vmmanager-pkg-vmnode 5.0" 0
        port=$(free_port)
        printf 'disabled=no\nlisten=tcp://127.0.0.1:%s\nsecret=PANELWROTETHIS0001\nlog=%s\nstate_file=%s\npanel_command=/bin/true\n' \
            "$port" $mgr/var/vmwatch-master.log $mgr/var/vmwatch-master.state >"$r$mgr/etc/vmwatch-master.conf"
        printf 'connect=tcp://127.0.0.1:%s\nsecret=PANELWROTETHIS0001\nnode_id=12\nuri=test:///default\nlog=%s\n' \
            "$port" $mgr/var/vmwatch-node.log >"$r$mgr/etc/vmwatch-node.conf"
        chmod 600 "$r$mgr"/etc/vmwatch-*.conf
        mkdir -p "$WORK/panel-conf-$dist"
        cp -p "$r$mgr"/etc/vmwatch-*.conf "$WORK/panel-conf-$dist/"
        for pair in $PANEL_DOUBLES; do
            svc=${pair%%:*} pkg=${pair#*:}
            if [ "$rhel" = 6 ]; then
                run_cmd chroot "$r" /sbin/service "$svc" start
            else
                run_cmd chroot "$r" /usr/bin/systemctl start "$svc.service"
            fi
            check_rc "$dist: the panel starts $svc" 0
            check_eq "$dist: $svc runs the original (double)" "original $svc of $pkg-5.0-1.$dist (test double)" \
                "$(await_who "$r" "$svc" "original $svc of $pkg-5.0-1.$dist (test double)")"
        done
        calls "$r" >/dev/null

        # --- install ours over them: el6 by rpm -U, el7 by rpm -i
        local op=-U
        [ "$rhel" = 7 ] && op=-i
        run_cmd "${rpmr[@]}" "$op" --nodeps "${ours1[@]}"
        check_rc "$dist: rpm $op of ours where the doubles are installed (no --force, no --replacefiles)" 0
        check "$dist: ... no conflict, no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'conflict|scriptlet|error'" _ "$OUT"
        check_eq "$dist: ours and the doubles installed side by side" \
            "vmmanager-kvm-5.0-1.$dist.noarch vmmanager-pkg-vmnode-5.0-1.$dist.noarch vmwatch-master-$version-1.$dist.x86_64 vmwatch-node-$version-1.$dist.x86_64" \
            "$("${rpmr[@]}" -qa 2>&1 | sort | paste -sd ' ' -)"
        for svc in vmwatch-master vmwatch-node; do
            check_eq "$dist: install took $svc over: the service runs ours, and only ours" vmwatch "$(await_who "$r" "$svc" vmwatch)"
            check "$dist: ... ours is the release binary" cmp "$r$lib/$svc" "$BIN_DIR/$svc"
            check "$dist: the original $svc is kept, untouched" cmp "$r$mgr/sbin/$svc" "$WORK/payload-$dist-5.0$mgr/sbin/$svc"
        done
        check "$dist: ours listens on the port of the panel's config ($port)" listening "$port"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: install stopped the originals with their own scripts, started ours with ours" \
                "chkconfig --add vmwatch-master|chkconfig --add vmwatch-node|service vmwatch-master start [vmwatch]|service vmwatch-master status [panel]|service vmwatch-master stop [panel]|service vmwatch-node start [vmwatch]|service vmwatch-node status [panel]|service vmwatch-node stop [panel]" \
                "$(calls "$r")"
            for svc in vmwatch-master vmwatch-node; do
                check "$dist: the panel's /etc/rc.d/init.d/$svc is kept aside, byte for byte" \
                    cmp "$r/var/lib/vmwatch/panel-initd/$svc" "$WORK/payload-$dist-5.0/etc/rc.d/init.d/$svc"
            done
        else
            check_eq "$dist: install reloaded systemd and try-restarted the units (enablement left to the panel)" \
                "systemctl daemon-reload|systemctl daemon-reload|systemctl try-restart vmwatch-master.service|systemctl try-restart vmwatch-node.service" \
                "$(calls "$r")"
            run_cmd "${rpmr[@]}" -V --nodeps vmmanager-kvm vmmanager-pkg-vmnode
            check_rc "$dist: rpm -V of the doubles: every file of theirs as they installed it" 0
        fi
        check "$dist: the panel's configs kept" \
            cmp "$r$mgr/etc/vmwatch-master.conf" "$WORK/panel-conf-$dist/vmwatch-master.conf"
        check "$dist: ... both" cmp "$r$mgr/etc/vmwatch-node.conf" "$WORK/panel-conf-$dist/vmwatch-node.conf"

        # --- the panel's packages are upgraded (their new files land on their paths), then
        #     reinstalled: ours stays, and is not restarted.
        pids_before=$(pids_of "$r" vmwatch-master)/$(pids_of "$r" vmwatch-node)
        run_cmd "${rpmr[@]}" -U --nodeps "${d51[@]}"
        check_rc "$dist: rpm -U the doubles to 5.1" 0
        check "$dist: ... no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'conflict|scriptlet|error'" _ "$OUT"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: the triggers put our scripts back in place, and restarted nothing" \
                "chkconfig --add vmwatch-master|chkconfig --add vmwatch-node" "$(calls "$r")"
        else
            check_eq "$dist: nothing to do for ours (the units in /etc win)" "" "$(calls "$r")"
        fi
        run_cmd "${rpmr[@]}" -U --replacepkgs --nodeps "${d51[@]}"
        check_rc "$dist: reinstall the doubles 5.1 (rpm -U --replacepkgs)" 0
        check "$dist: ... no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'conflict|scriptlet|error'" _ "$OUT"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: the triggers put our scripts back in place again, and restarted nothing" \
                "chkconfig --add vmwatch-master|chkconfig --add vmwatch-node" "$(calls "$r")"
        else
            check_eq "$dist: nothing to do for ours" "" "$(calls "$r")"
        fi
        for svc in vmwatch-master vmwatch-node; do
            check_eq "$dist: after the panel's upgrade and reinstall, $svc still runs ours" vmwatch "$(who_runs "$r" "$svc")"
            if [ "$rhel" = 6 ]; then
                check_eq "$dist: /etc/rc.d/init.d/$svc is our link again" "../../..$lib/init.d/$svc" "$(readlink "$r/etc/rc.d/init.d/$svc")"
                check "$dist: the panel's 5.1 script is kept aside, byte for byte" \
                    cmp "$r/var/lib/vmwatch/panel-initd/$svc" "$WORK/payload-$dist-5.1/etc/rc.d/init.d/$svc"
            fi
            check "$dist: the panel's 5.1 $svc binary is in its place" cmp "$r$mgr/sbin/$svc" "$WORK/payload-$dist-5.1$mgr/sbin/$svc"
        done
        check_eq "$dist: ... the same processes as before: not restarted" "$pids_before" \
            "$(pids_of "$r" vmwatch-master)/$(pids_of "$r" vmwatch-node)"
        # A start from scratch (boot): still ours.
        for svc in vmwatch-master vmwatch-node; do
            if [ "$rhel" = 6 ]; then
                run_cmd chroot "$r" /sbin/service "$svc" restart
            else
                run_cmd chroot "$r" /usr/bin/systemctl restart "$svc.service"
            fi
            check_rc "$dist: restart $svc" 0
            check_eq "$dist: ... it starts ours" vmwatch "$(await_who "$r" "$svc" vmwatch)"
        done
        calls "$r" >/dev/null

        # --- upgrade ours: still ours, the panel's configs kept
        run_cmd "${rpmr[@]}" -U --nodeps "${ours2[@]}"
        check_rc "$dist: rpm -U ours to release 2" 0
        check "$dist: ... no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'conflict|scriptlet|error'" _ "$OUT"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: our upgrade condrestarted ours (with our scripts)" \
                "service vmwatch-master condrestart [vmwatch]|service vmwatch-node condrestart [vmwatch]" "$(calls "$r")"
        else
            check_eq "$dist: our upgrade reloaded systemd and try-restarted" \
                "systemctl daemon-reload|systemctl daemon-reload|systemctl try-restart vmwatch-master.service|systemctl try-restart vmwatch-node.service" \
                "$(calls "$r")"
        fi
        for svc in vmwatch-master vmwatch-node; do
            check_eq "$dist: after our upgrade $svc runs ours" vmwatch "$(await_who "$r" "$svc" vmwatch)"
            check "$dist: ... the panel's $svc.conf kept" cmp "$r$mgr/etc/$svc.conf" "$WORK/panel-conf-$dist/$svc.conf"
            check "$dist: ... the changed default beside it as .rpmnew" cmp "$r$mgr/etc/$svc.conf.rpmnew" "$conf2/$svc.conf"
        done
        check "$dist: ours listens on the port of the panel's config" listening "$port"

        # --- erase ours: the panel's files back byte for byte, its daemons run again
        run_cmd "${rpmr[@]}" -e vmwatch-master vmwatch-node
        check_rc "$dist: rpm -e ours" 0
        check "$dist: ... no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'scriptlet|error'" _ "$OUT"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: erase stopped ours with our scripts, started the originals with theirs" \
                "service vmwatch-master start [panel]|service vmwatch-master status [vmwatch]|service vmwatch-master stop [vmwatch]|service vmwatch-node start [panel]|service vmwatch-node status [vmwatch]|service vmwatch-node stop [vmwatch]" \
                "$(calls "$r")"
        else
            check_eq "$dist: erase reloaded systemd and try-restarted (no disable: the panel's enablement stays)" \
                "systemctl daemon-reload|systemctl daemon-reload|systemctl try-restart vmwatch-master.service|systemctl try-restart vmwatch-node.service" \
                "$(calls "$r")"
        fi
        check_eq "$dist: only the doubles are left in the rpm database" \
            "vmmanager-kvm-5.1-1.$dist.noarch vmmanager-pkg-vmnode-5.1-1.$dist.noarch" "$("${rpmr[@]}" -qa 2>&1 | sort | paste -sd ' ' -)"
        run_cmd "${rpmr[@]}" -V --nodeps vmmanager-kvm vmmanager-pkg-vmnode
        check_rc "$dist: rpm -V of the doubles: every file as they installed it (digest, mode, owner, mtime)" 0
        for f in $(panel_files "$dist"); do
            check "$dist: $f is the 5.1 double's, byte for byte" cmp "$r$f" "$WORK/payload-$dist-5.1$f"
            check "$dist: ... a plain file, not a link" test ! -L "$r$f"
        done
        for pair in $PANEL_DOUBLES; do
            svc=${pair%%:*} pkg=${pair#*:}
            check "$dist: the panel's $svc.conf is back under its name" cmp "$r$mgr/etc/$svc.conf" "$WORK/panel-conf-$dist/$svc.conf"
            check_eq "$dist: ... still 0600" "600 root:root" "$(mode_of "$r" "$mgr/etc/$svc.conf")"
            check_eq "$dist: the service $svc runs the original again (the 5.1 double), only it" \
                "original $svc of $pkg-5.1-1.$dist (test double)" \
                "$(await_who "$r" "$svc" "original $svc of $pkg-5.1-1.$dist (test double)")"
        done
        check "$dist: nothing of ours is left (binaries, scripts, units, links, saved files)" \
            bash -c "! ls -d '$r$lib' '$r/var/lib/vmwatch' '$r'/etc/systemd/system/vmwatch-* '$r'/etc/logrotate.d/vmwatch-* >/dev/null 2>&1"

        # --- ours again, then the panel's packages are erased: ours stays, registered
        run_cmd "${rpmr[@]}" -U --nodeps "${ours2[@]}"
        check_rc "$dist: rpm -U ours again over the 5.1 doubles" 0
        for svc in vmwatch-master vmwatch-node; do
            check_eq "$dist: ... $svc runs ours again" vmwatch "$(await_who "$r" "$svc" vmwatch)"
        done
        calls "$r" >/dev/null
        run_cmd "${rpmr[@]}" -e vmmanager-kvm vmmanager-pkg-vmnode
        check_rc "$dist: rpm -e the doubles (the panel's packages go, ours stays)" 0
        check "$dist: ... no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'scriptlet|error'" _ "$OUT"
        if [ "$rhel" = 6 ]; then
            # The doubles' %preun stop the service (with our script) and unregister it; our
            # %triggerpostun registers ours again.
            check_eq "$dist: the doubles stopped and unregistered the service, our trigger registered it again" \
                "chkconfig --add vmwatch-master|chkconfig --add vmwatch-node|chkconfig --del vmwatch-master|chkconfig --del vmwatch-node|service vmwatch-master stop [vmwatch]|service vmwatch-node stop [vmwatch]" \
                "$(calls "$r")"
            for svc in vmwatch-master vmwatch-node; do
                check_eq "$dist: /etc/rc.d/init.d/$svc is our link" "../../..$lib/init.d/$svc" "$(readlink "$r/etc/rc.d/init.d/$svc")"
                check "$dist: ... the panel's saved script is gone with its package" test ! -e "$r/var/lib/vmwatch/panel-initd/$svc"
                run_cmd chroot "$r" /sbin/service "$svc" start
                check_rc "$dist: service $svc start" 0
                check_eq "$dist: ... runs ours" vmwatch "$(await_who "$r" "$svc" vmwatch)"
            done
        else
            check_eq "$dist: the doubles disabled and stopped the units, our trigger enabled ours again" \
                "systemctl --no-reload disable vmwatch-master.service|systemctl --no-reload disable vmwatch-node.service|systemctl preset vmwatch-master.service|systemctl preset vmwatch-node.service|systemctl stop vmwatch-master.service|systemctl stop vmwatch-node.service" \
                "$(calls "$r")"
            for svc in vmwatch-master vmwatch-node; do
                run_cmd chroot "$r" /usr/bin/systemctl start "$svc.service"
                check_rc "$dist: systemctl start $svc" 0
                check_eq "$dist: ... runs ours" vmwatch "$(await_who "$r" "$svc" vmwatch)"
            done
        fi
        check_eq "$dist: only ours in the rpm database" \
            "vmwatch-master-$version-2.$dist.x86_64 vmwatch-node-$version-2.$dist.x86_64" "$("${rpmr[@]}" -qa 2>&1 | sort | paste -sd ' ' -)"
        run_cmd "${rpmr[@]}" -e vmwatch-master vmwatch-node
        check_rc "$dist: and erase ours: nothing to give back" 0
        check "$dist: ... no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'scriptlet|error'" _ "$OUT"
        for svc in vmwatch-master vmwatch-node; do
            check_eq "$dist: ... $svc stopped" "" "$(who_runs "$r" "$svc")"
        done
        check "$dist: ... no service script or unit left" \
            bash -c "! ls -d '$r'/etc/rc.d/init.d/vmwatch-* '$r'/etc/systemd/system/vmwatch-* '$r'/usr/lib/systemd/system/vmwatch-* '$r$lib' >/dev/null 2>&1"

        takeover_stop "$r" "$rhel"
        check "$dist: the root's /proc is unmounted" bash -c "! mountpoint -q '$r/proc'"
    done
}
