# shellcheck shell=bash
# The RPMs: metadata, rpmlint, and install -> upgrade -> erase into a throwaway root.
#
# The throwaway root gets a static busybox as /bin/sh (scriptlets run chrooted there) and
# logging STAND-INS for chkconfig, service and systemctl: they only record what the
# scriptlets asked for, which the checks compare with what CentOS must see.

CACHE_DIR=$TOP/target/pkgtest-cache

# Debian's static busybox, for the throwaway root's /bin/sh (downloaded, not installed).
fetch_busybox() {
    [ -x "$CACHE_DIR/busybox" ] && return 0
    rm -rf "$CACHE_DIR/deb" "$CACHE_DIR/x"
    mkdir -p "$CACHE_DIR/deb"
    (
        cd "$CACHE_DIR/deb" || exit 1
        apt-get download busybox-static >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get download busybox-static >/dev/null 2>&1; }
    )
    dpkg-deb -x "$CACHE_DIR"/deb/busybox-static_*.deb "$CACHE_DIR/x"
    install -m 0755 "$CACHE_DIR/x/bin/busybox" "$CACHE_DIR/busybox"
    rm -rf "$CACHE_DIR/deb" "$CACHE_DIR/x"
}

rpm_version() {
    sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$TOP/Cargo.toml" | head -n 1
}

# new_root DIR: an empty system with /bin/sh, /dev/null and the logging stand-ins.
new_root() {
    local r=$1 tool
    mkdir -p "$r"/bin "$r"/sbin "$r"/usr/bin "$r"/usr/sbin "$r"/dev "$r"/tmp "$r"/var/log "$r"/var/lib/rpm "$r"/var/run
    # CentOS 6 and 7 have /etc/rc.d/init.d (chkconfig's) whatever is installed.
    mkdir -p "$r"/etc/rc.d/init.d
    install -m 0755 "$CACHE_DIR/busybox" "$r/bin/sh"
    mknod -m 0666 "$r/dev/null" c 1 3
    for tool in sbin/chkconfig sbin/service usr/bin/systemctl; do
        cat >"$r/$tool" <<'EOF'
#!/bin/sh
# STAND-IN (packaging tests): records the call instead of doing it.
echo "${0##*/} $*" >>/var/log/standin.log
EOF
        chmod 0755 "$r/$tool"
    done
}

# calls ROOT: what the stand-ins recorded since the last call, sorted, then forgotten.
calls() {
    sort "$1/var/log/standin.log" 2>/dev/null | paste -sd '|' -
    rm -f "$1/var/log/standin.log"
}

# mode_of ROOT PATH: "mode owner:group" of ROOT/PATH.
mode_of() {
    stat -c '%a %U:%G' "$1$2" 2>/dev/null || echo missing
}

test_rpm() {
    local version dist rhel r rpms1=$BIN_DIR rpms2=$WORK/rpms2 conf2=$WORK/conf2 pkg f
    version=$(rpm_version)
    check "Cargo.toml gives the package version" test -n "$version"

    # Release 2: the same files but changed default configs, to upgrade to.
    mkdir -p "$conf2"
    for f in vmwatch-master.conf vmwatch-node.conf; do
        { cat "$TOP/packaging/conf/$f"; echo "# (test: a default changed in release 2)"; } >"$conf2/$f"
    done
    check "build release 2 (changed default configs) for the upgrade test" \
        env VMWATCH_RPM_RELEASE=2 VMWATCH_RPM_CONF_DIR="$conf2" bash "$TOP/packaging/rpm/build-rpms.sh" "$rpms2"

    # rpmlint on the four packages and the spec, with the filters explained in rpmlint.toml.
    run_cmd rpmlint -c "$TOP/packaging/rpm/rpmlint.toml" \
        "$rpms1"/vmwatch-{master,node}-"$version"-1.el{6,7}.x86_64.rpm "$TOP/packaging/rpm/vmwatch.spec"
    printf '%s\n' "$OUT" | sed 's/^/        rpmlint| /'
    check_out "rpmlint: 0 errors on the four RPMs and the spec" ' 0 errors,'
    check_rc "rpmlint exit status" 0

    for dist in el6 el7; do
        rhel=${dist#el}
        local m1=$rpms1/vmwatch-master-$version-1.$dist.x86_64.rpm n1=$rpms1/vmwatch-node-$version-1.$dist.x86_64.rpm
        local m2=$rpms2/vmwatch-master-$version-2.$dist.x86_64.rpm n2=$rpms2/vmwatch-node-$version-2.$dist.x86_64.rpm
        check "$dist: make rpm built both packages" test -f "$m1" -a -f "$n1"
        if [ ! -f "$m1" ] || [ ! -f "$n1" ] || [ ! -f "$m2" ] || [ ! -f "$n2" ]; then
            fail "$dist: RPMs missing, skipping the install tests for $dist"
            continue
        fi

        # --- metadata
        for pkg in "$m1" "$n1"; do
            local base reqs rpmlibs glibc
            base=$(basename "$pkg")
            check_eq "$base: name, arch, dist tag" \
                "$(basename "$pkg" | sed 's/-[0-9].*//') x86_64 .$dist" \
                "$(rpm -qp --qf '%{NAME} %{ARCH} ' "$pkg" 2>/dev/null)$(rpm -qp --qf '%{RELEASE}' "$pkg" 2>/dev/null | grep -o "\\.$dist\$")"
            check_eq "$base: gzip payload (CentOS 6's rpm 4.8 reads it)" gzip \
                "$(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$pkg" 2>/dev/null)"
            reqs=$(rpm -qpR "$pkg" 2>/dev/null)
            # rpmlib features rpm 4.8 (CentOS 6) has; anything else makes it refuse the package.
            rpmlibs=$(printf '%s\n' "$reqs" | grep -o '^rpmlib([A-Za-z]*)' | grep -Ev \
                'rpmlib\((CompressedFileNames|PayloadFilesHavePrefix|FileDigests|PayloadIsXz|PayloadIsBzip2|PayloadIsLzma|VersionedDependencies|ScriptletInterpreterArgs|PartialHardlinkSets|ExplicitPackageProvide|HeaderLoadSortsTags|BuiltinLuaScripts|ConcurrentAccess|FileCaps)\)' || true)
            check_eq "$base: needs no rpmlib feature newer than CentOS 6's rpm" "" "$rpmlibs"
            # The static master requires no glibc version at all: no match is fine.
            glibc=$(printf '%s\n' "$reqs" | { grep -o 'GLIBC_[0-9.]*' || true; } | sed 's/GLIBC_//' | sort -V | tail -n 1)
            if [ -n "$glibc" ]; then
                check "$base: requires no glibc symbol version above 2.12 (highest $glibc)" version_le "$glibc" 2.12
            fi
            if [ "$rhel" = 6 ]; then
                check_match "$base: el6 scriptlets require chkconfig and initscripts" '^chkconfig$' "$reqs"
                check_match "$base: ... initscripts" '^initscripts$' "$reqs"
            else
                check_match "$base: el7 scriptlets require systemd" '^systemd$' "$reqs"
            fi
            check_match "$base: requires logrotate" '^logrotate$' "$reqs"
        done
        check_match "$(basename "$n1"): requires libvirt.so.0" '^libvirt\.so\.0\(\)\(64bit\)$' "$(rpm -qpR "$n1" 2>/dev/null)"
        check_eq "$(basename "$m1"): the static master brings no library requirement" "" \
            "$(rpm -qpR "$m1" 2>/dev/null | grep '\.so' || true)"

        # --- install into a throwaway root over a config the panel wrote beforehand
        r=$WORK/root-$dist
        new_root "$r"
        local rpmr=(rpm --root "$r" --dbpath /var/lib/rpm)
        mkdir -p "$r/usr/local/mgr5/etc"
        printf 'connect=tcp://10.0.0.1:1515\nsecret=PANELWROTETHIS0001\nnode_id=12\n' >"$r/usr/local/mgr5/etc/vmwatch-node.conf"
        chmod 600 "$r/usr/local/mgr5/etc/vmwatch-node.conf"
        cp -p "$r/usr/local/mgr5/etc/vmwatch-node.conf" "$WORK/panel-node-$dist.conf"

        run_cmd "${rpmr[@]}" -i --nodeps "$m1" "$n1"
        check_rc "$dist: rpm -i of both packages into a throwaway root" 0
        check "$dist: install: no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'scriptlet|error'" _ "$OUT"
        check_eq "$dist: both packages installed" "vmwatch-master-$version-1.$dist.x86_64 vmwatch-node-$version-1.$dist.x86_64" \
            "$("${rpmr[@]}" -q vmwatch-master vmwatch-node 2>&1 | paste -sd ' ' -)"

        local mgr=/usr/local/mgr5 lib=/usr/local/mgr5/libexec/vmwatch
        check_eq "$dist: $lib/vmwatch-master 0755 root" "755 root:root" "$(mode_of "$r" $lib/vmwatch-master)"
        check_eq "$dist: $lib/vmwatch-node 0755 root" "755 root:root" "$(mode_of "$r" $lib/vmwatch-node)"
        check_eq "$dist: $mgr/sbin/vmwatch-panel 0755 root" "755 root:root" "$(mode_of "$r" $mgr/sbin/vmwatch-panel)"
        check "$dist: the installed binaries are the release binaries, byte for byte" \
            bash -c "cmp '$r$lib/vmwatch-master' '$BIN_DIR/vmwatch-master' && cmp '$r$lib/vmwatch-node' '$BIN_DIR/vmwatch-node'"
        check "$dist: nothing of ours in $mgr/sbin but vmwatch-panel (the panel's packages own the rest)" \
            test ! -e "$r$mgr/sbin/vmwatch-master" -a ! -e "$r$mgr/sbin/vmwatch-node"
        check "$dist: vmwatch-panel is packaging/vmwatch-panel" cmp "$r$mgr/sbin/vmwatch-panel" "$TOP/packaging/vmwatch-panel"
        check_eq "$dist: $mgr/etc/vmwatch-master.conf 0600 root (holds the secret)" "600 root:root" "$(mode_of "$r" $mgr/etc/vmwatch-master.conf)"
        check "$dist: a fresh install gets the packaged master config (disabled=yes)" \
            cmp "$r$mgr/etc/vmwatch-master.conf" "$TOP/packaging/conf/vmwatch-master.conf"
        check "$dist: install did not replace the node config the panel wrote before" \
            cmp "$r$mgr/etc/vmwatch-node.conf" "$WORK/panel-node-$dist.conf"
        check_eq "$dist: ... still 0600" "600 root:root" "$(mode_of "$r" $mgr/etc/vmwatch-node.conf)"
        check "$dist: ... the packaged default went beside it as .rpmnew" \
            cmp "$r$mgr/etc/vmwatch-node.conf.rpmnew" "$TOP/packaging/conf/vmwatch-node.conf"
        check_eq "$dist: log directory $mgr/var 0755 root" "755 root:root" "$(mode_of "$r" $mgr/var)"
        for pkg in vmwatch-master vmwatch-node; do
            check_eq "$dist: /etc/logrotate.d/$pkg 0644" "644 root:root" "$(mode_of "$r" /etc/logrotate.d/$pkg)"
            check_eq "$dist: man page $pkg.8.gz 0644" "644 root:root" "$(mode_of "$r" /usr/share/man/man8/$pkg.8.gz)"
            if [ "$rhel" = 6 ]; then
                check_eq "$dist: $lib/init.d/$pkg 0755" "755 root:root" "$(mode_of "$r" $lib/init.d/$pkg)"
                check "$dist: the packaged init script is init.d/$pkg" cmp "$r$lib/init.d/$pkg" "$TOP/init.d/$pkg"
                # Relative, so that it also resolves inside this throwaway root.
                check_eq "$dist: /etc/rc.d/init.d/$pkg is a link to it (made by %post, owned by no package)" \
                    "../../..$lib/init.d/$pkg" "$(readlink "$r/etc/rc.d/init.d/$pkg")"
                check "$dist: ... which resolves in the root to init.d/$pkg" cmp "$r/etc/rc.d/init.d/$pkg" "$TOP/init.d/$pkg"
                check_eq "$dist: ... and no package owns /etc/rc.d/init.d/$pkg" "" \
                    "$("${rpmr[@]}" -qa --qf '[%{FILENAMES}\n]' 2>&1 | grep -Fx "/etc/rc.d/init.d/$pkg" || true)"
                check "$dist: no systemd unit in the el6 package" test ! -e "$r/etc/systemd/system/$pkg.service"
            else
                check_eq "$dist: /etc/systemd/system/$pkg.service 0644" "644 root:root" \
                    "$(mode_of "$r" /etc/systemd/system/$pkg.service)"
                check "$dist: the unit is packaging/systemd/$pkg.service" \
                    cmp "$r/etc/systemd/system/$pkg.service" "$TOP/packaging/systemd/$pkg.service"
                check "$dist: nothing in /usr/lib/systemd/system (the panel's packages own $pkg.service there)" \
                    test ! -e "$r/usr/lib/systemd/system/$pkg.service"
                check_eq "$dist: the preset enables $pkg" "enable $pkg.service" \
                    "$(cat "$r"/usr/lib/systemd/system-preset/*-"$pkg".preset 2>/dev/null)"
                check "$dist: no SysV script in the el7 package" test ! -e "$r/etc/rc.d/init.d/$pkg"
            fi
        done
        # check_vmwatch (issue 9): in both packages, where CentOS keeps nagios plugins.
        local plug=/usr/lib64/nagios/plugins/check_vmwatch
        check_eq "$dist: $plug 0755 root" "755 root:root" "$(mode_of "$r" $plug)"
        check "$dist: ... the release plugin, byte for byte, and it runs" \
            bash -c "cmp '$r$plug' '$BIN_DIR/check_vmwatch' && '$r$plug' -V"
        check_eq "$dist: man pages check_vmwatch.8.gz and vmwatch.conf.5.gz 0644" "644 root:root|644 root:root" \
            "$(mode_of "$r" /usr/share/man/man8/check_vmwatch.8.gz)|$(mode_of "$r" /usr/share/man/man5/vmwatch.conf.5.gz)"
        run_cmd "${rpmr[@]}" -V --nodeps vmwatch-master
        check_rc "$dist: rpm -V vmwatch-master: every file as packaged" 0
        run_cmd "${rpmr[@]}" -V --nodeps vmwatch-node
        check_eq "$dist: rpm -V vmwatch-node: only the panel's config differs" \
            "c $mgr/etc/vmwatch-node.conf" "$(printf '%s\n' "$OUT" | awk '{print $(NF-1), $NF}')"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: install ran chkconfig --add for both services" \
                "chkconfig --add vmwatch-master|chkconfig --add vmwatch-node" "$(calls "$r")"
        else
            check_eq "$dist: install ran systemctl preset for both units" \
                "systemctl preset vmwatch-master.service|systemctl preset vmwatch-node.service" "$(calls "$r")"
        fi

        # --- the panel configures the master; then upgrade to release 2
        printf 'disabled=no\nlisten=tcp://10.0.0.1:1515\nsecret=PANELWROTETHIS0001\n' >"$r$mgr/etc/vmwatch-master.conf"
        cp -p "$r$mgr/etc/vmwatch-master.conf" "$WORK/panel-master-$dist.conf"
        rm -f "$r$mgr/etc/vmwatch-node.conf.rpmnew"

        run_cmd "${rpmr[@]}" -U --nodeps "$m2" "$n2"
        check_rc "$dist: rpm -U to release 2" 0
        check "$dist: upgrade: no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'scriptlet|error'" _ "$OUT"
        check_eq "$dist: release 2 installed, release 1 gone" "vmwatch-master-$version-2.$dist.x86_64 vmwatch-node-$version-2.$dist.x86_64" \
            "$("${rpmr[@]}" -qa 'vmwatch-*' 2>&1 | sort | paste -sd ' ' -)"
        check "$dist: upgrade kept the master config the panel wrote" \
            cmp "$r$mgr/etc/vmwatch-master.conf" "$WORK/panel-master-$dist.conf"
        check "$dist: ... and put the changed default beside it as .rpmnew" \
            cmp "$r$mgr/etc/vmwatch-master.conf.rpmnew" "$conf2/vmwatch-master.conf"
        check "$dist: upgrade kept the node config the panel wrote" \
            cmp "$r$mgr/etc/vmwatch-node.conf" "$WORK/panel-node-$dist.conf"
        check "$dist: ... and put the changed default beside it as .rpmnew" \
            cmp "$r$mgr/etc/vmwatch-node.conf.rpmnew" "$conf2/vmwatch-node.conf"
        check_eq "$dist: configs still 0600" "600 root:root|600 root:root" \
            "$(mode_of "$r" $mgr/etc/vmwatch-master.conf)|$(mode_of "$r" $mgr/etc/vmwatch-node.conf)"
        check_eq "$dist: binaries still 0755" "755 root:root|755 root:root" \
            "$(mode_of "$r" $lib/vmwatch-master)|$(mode_of "$r" $lib/vmwatch-node)"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: upgrade only condrestarts (restart if running; enablement untouched)" \
                "service vmwatch-master condrestart|service vmwatch-node condrestart" "$(calls "$r")"
        else
            check_eq "$dist: upgrade only reloads systemd and try-restarts (enablement untouched)" \
                "systemctl daemon-reload|systemctl daemon-reload|systemctl try-restart vmwatch-master.service|systemctl try-restart vmwatch-node.service" \
                "$(calls "$r")"
        fi

        # --- erase
        run_cmd "${rpmr[@]}" -e vmwatch-master vmwatch-node
        check_rc "$dist: rpm -e of both packages" 0
        check "$dist: erase: no scriptlet failed" bash -c "! printf '%s' \"\$1\" | grep -Eqi 'scriptlet|error'" _ "$OUT"
        check_eq "$dist: nothing of ours left in the rpm database" "" "$("${rpmr[@]}" -qa 'vmwatch-*' 2>&1)"
        if [ "$rhel" = 6 ]; then
            check_eq "$dist: erase stopped and unregistered both services" \
                "chkconfig --del vmwatch-master|chkconfig --del vmwatch-node|service vmwatch-master status|service vmwatch-master stop|service vmwatch-node status|service vmwatch-node stop" \
                "$(calls "$r")"
        else
            check_eq "$dist: erase disabled and stopped both units" \
                "systemctl --no-reload disable vmwatch-master.service|systemctl --no-reload disable vmwatch-node.service|systemctl daemon-reload|systemctl daemon-reload|systemctl stop vmwatch-master.service|systemctl stop vmwatch-node.service" \
                "$(calls "$r")"
        fi
        check "$dist: erase removed the binaries" test ! -e "$r$lib/vmwatch-master" -a ! -e "$r$lib/vmwatch-node"
        check "$dist: erase removed the init scripts, their links and units, and $lib" \
            bash -c "! ls -d '$r'/etc/rc.d/init.d/vmwatch-* '$r'/etc/systemd/system/vmwatch-* '$r$lib' '$r/var/lib/vmwatch' >/dev/null 2>&1"
        check "$dist: erase kept the panel's master config (as .rpmsave)" \
            cmp "$r$mgr/etc/vmwatch-master.conf.rpmsave" "$WORK/panel-master-$dist.conf"
        check "$dist: erase kept the panel's node config (as .rpmsave)" \
            cmp "$r$mgr/etc/vmwatch-node.conf.rpmsave" "$WORK/panel-node-$dist.conf"
    done
}
