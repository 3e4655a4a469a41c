# shellcheck shell=bash
# The systemd units: systemd-analyze verify (it exits 0 even when it reports problems, so
# any output fails), and only settings that CentOS 7's systemd 219 knows, in the sections
# where 219 reads them.

# Every key these units may use, each checked against systemd 219's man pages
# (systemd.unit, systemd.service, systemd.exec): a newer one is silently ignored by 219,
# so a unit could look hardened here and not be on CentOS 7.
SYSTEMD219_KEYS="
Unit.Description Unit.Documentation Unit.Wants Unit.Requires Unit.After Unit.Before
Service.Type Service.EnvironmentFile Service.Environment Service.ExecStartPre
Service.ExecStart Service.ExecReload Service.ExecStop Service.PIDFile
Service.TimeoutStartSec Service.TimeoutStopSec Service.Restart Service.RestartSec
Service.RestartPreventExitStatus Service.StartLimitInterval Service.StartLimitBurst
Service.NoNewPrivileges Service.PrivateTmp Service.PrivateDevices Service.ProtectHome
Service.ProtectSystem Service.ReadWriteDirectories Service.ReadOnlyDirectories
Service.InaccessibleDirectories Service.CapabilityBoundingSet
Service.RestrictAddressFamilies Service.LimitNOFILE Service.KillMode
Install.WantedBy
"

# unit_keys FILE: "Section.Key" for every setting in FILE.
unit_keys() {
    awk '
        /^[[:space:]]*(#|;|$)/ { next }
        /^\[/ { gsub(/[][]/, ""); section = $0; next }
        { key = $0; sub(/=.*/, "", key); gsub(/[[:space:]]/, "", key); print section "." key }
    ' "$1"
}

# unit_value FILE SECTION.KEY: the values of that setting, one per line.
unit_value() {
    awk -v want="$2" '
        /^\[/ { s = $0; gsub(/[][]/, "", s); next }
        /^[[:space:]]*(#|;|$)/ { next }
        { k = $0; sub(/=.*/, "", k); gsub(/[[:space:]]/, "", k)
          if (s "." k == want) { v = $0; sub(/^[^=]*=/, "", v); print v } }
    ' "$1"
}

test_systemd() {
    local dir=$WORK/systemd u name key bad
    mkdir -p "$dir/sbin"
    # verify wants ExecStart's programs to exist: point the copies at the release binaries.
    # Nothing else in the units is changed.
    cp "$BIN_DIR/vmwatch-master" "$BIN_DIR/vmwatch-node" "$dir/sbin/"
    for u in "$TOP"/packaging/systemd/*.service; do
        name=$(basename "$u")
        sed "s|/usr/local/mgr5/libexec/vmwatch/|$dir/sbin/|g" "$u" >"$dir/$name"
        run_cmd bash -c "cd '$dir' && systemd-analyze verify --man=no './$name'"
        # verify also loads the machine's other units and complains about theirs (e.g.
        # graphite-carbon's carbon-cache.service, installed by the Graphite test): only
        # lines about ours count.
        OUT=$(printf '%s\n' "$OUT" | grep -Ev '^/(usr/)?lib/systemd/system/[^ ]+\.service:[0-9]+: ' || true)
        if [ "$RC" -eq 0 ] && [ -z "$OUT" ]; then
            pass "$name: systemd-analyze verify --man=no prints nothing"
        else
            fail "$name: systemd-analyze verify (exit $RC) reported:"
            printf '%s\n' "$OUT" | sed 's/^/        | /'
        fi

        bad=
        for key in $(unit_keys "$u"); do
            case " $(printf '%s' "$SYSTEMD219_KEYS" | tr -s '[:space:]' ' ') " in
                *" $key "*) ;;
                *) bad="$bad $key" ;;
            esac
        done
        check_eq "$name: only settings systemd 219 knows, in their 219 sections" "" "${bad# }"

        check_eq "$name: foreground service (Type=simple)" simple "$(unit_value "$u" Service.Type)"
        check_match "$name: ExecStart runs the daemon in the foreground (-f)" ' -f( |$)' \
            "$(unit_value "$u" Service.ExecStart)"
        check_eq "$name: Restart=on-failure" on-failure "$(unit_value "$u" Service.Restart)"
        check_match "$name: ExecStartPre checks the config (-t)" ' -t( |$)' \
            "$(unit_value "$u" Service.ExecStartPre)"
        # shellcheck disable=SC2016 # $MAINPID is systemd's, not ours
        check_eq "$name: ExecReload sends SIGHUP to the main process" '/bin/kill -HUP $MAINPID' \
            "$(unit_value "$u" Service.ExecReload)"
        check_match "$name: StartLimitInterval and StartLimitBurst in [Service]" '^[0-9]+ [0-9]+$' \
            "$(unit_value "$u" Service.StartLimitInterval) $(unit_value "$u" Service.StartLimitBurst)"
        check_eq "$name: NoNewPrivileges, PrivateTmp, ProtectSystem=full" "yes yes full" \
            "$(unit_value "$u" Service.NoNewPrivileges) $(unit_value "$u" Service.PrivateTmp) $(unit_value "$u" Service.ProtectSystem)"
        check_match "$name: the log directory stays writable under ProtectSystem=full" \
            '^/usr/local/mgr5(/var)?$' "$(unit_value "$u" Service.ReadWriteDirectories)"
    done

    u=$TOP/packaging/systemd/vmwatch-node.service
    check_match "vmwatch-node.service: After=libvirtd.service" '(^| )libvirtd\.service( |$)' "$(unit_value "$u" Unit.After)"
    u=$TOP/packaging/systemd/vmwatch-master.service
    check_eq "vmwatch-master.service: the panel's tree /usr/local/mgr5 stays writable for panel_command" \
        /usr/local/mgr5 "$(unit_value "$u" Service.ReadWriteDirectories)"
}

# setpriv_caps UNIT: the unit's CapabilityBoundingSet= as setpriv --bounding-set syntax.
setpriv_caps() {
    local v cap list=
    v=$(unit_value "$1" Service.CapabilityBoundingSet)
    if [ -z "$v" ]; then
        echo -all
        return
    fi
    case $v in
        "~"*) ;;
        *) echo "unsupported CapabilityBoundingSet form: $v" >&2; return 1 ;;
    esac
    for cap in ${v#"~"}; do
        cap=$(printf '%s' "${cap#CAP_}" | tr '[:upper:]' '[:lower:]')
        list="$list,-$cap"
    done
    echo "${list#,}"
}

# What systemd cannot show here (no systemd running): that each daemon works with the
# capability bounding set and no_new_privs its unit gives it. setpriv applies both; the
# node then talks to this machine's real libvirtd through its unix socket, as on a node.
test_hardening() {
    local dir=$WORK/hardening name caps conf pid port capeff rc
    mkdir -p "$dir"
    for name in vmwatch-master vmwatch-node; do
        caps=$(setpriv_caps "$TOP/packaging/systemd/$name.service")
        port=$(free_port)
        conf=$dir/$name.conf
        if [ "$name" = vmwatch-node ] && ! virsh -c qemu:///system version >/dev/null 2>&1; then
            skip "$name under its unit's capabilities: libvirtd is not running (make setup starts it)"
            continue
        fi
        write_daemon_conf "$name" "$dir" "$port" qemu:///system
        setpriv --no-new-privs --bounding-set "$caps" --inh-caps -all -- \
            "$BIN_DIR/$name" -f -c "$conf" -p "$dir/$name.pid" >"$dir/$name.out" 2>&1 &
        pid=$!
        sleep 2
        check "$name runs with its unit's bounding set ($caps) and no_new_privs" pid_alive "$pid"
        if pid_alive "$pid"; then
            check "$name: ... no_new_privs is set" grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status"
            capeff=$(awk '/^CapEff/ {print $2}' "/proc/$pid/status")
            if [ "$name" = vmwatch-node ]; then
                check_eq "$name: ... with no effective capability at all" 0000000000000000 "$capeff"
            else
                # CAP_SYS_ADMIN is bit 21.
                check_eq "$name: ... without CAP_SYS_ADMIN" 0 "$(( (0x$capeff >> 21) & 1 ))"
                check "$name: ... listening on its port" listening "$port"
            fi
        fi
        kill -TERM "$pid" 2>/dev/null || true
        rc=0
        wait "$pid" || rc=$?
        check_eq "$name: ... and stops cleanly on SIGTERM" 0 "$rc"
        if [ "$rc" -ne 0 ]; then
            sed 's/^/        | /' "$dir/$name.out" | tail -n 20
        fi
    done
}
