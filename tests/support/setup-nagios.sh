#!/usr/bin/env bash
# Installs the Debian packages the tests of the operators' own tools need, if they are
# missing (root; idempotent, waits for another apt to finish rather than failing). Run by
# tests/support/setup-host.sh (`make setup`, which `make test` runs); the tests never
# install anything: they run `setup-nagios.sh --check`, which only says what is missing
# (exit 1) and changes nothing.
#   nagios4-core              the real Nagios 4 core the plugin runs under
#   monitoring-plugins-basic  check_by_ssh, check_dummy: the standard plugins beside ours
#   dma                       nagios4-core needs a mail transport (through bsd-mailx); dma
#                             is one without a listening daemon (exim4, the default, would
#                             start an SMTP server on this machine)
#   mandoc                    `mandoc -T lint` of the man pages (tests/packaging docs group)
#   openssh-server            the sshd tests/ops_check_by_ssh.rs runs on loopback with its
#   openssh-client            own configuration (check_by_ssh runs ssh)
#   rsyslog                   the syslog daemon tests/ops_rsyslog.rs runs with its own
#                             configuration and socket
#   logrotate                 tests/ops_logrotate.rs runs the shipped files under load
#   graphite-carbon           the real carbon-cache tests/graphite_carbon.rs runs on
#   python3-whisper           loopback, and the reader of its whisper files
#
# None of these may start a service of this machine: the packages are installed under a
# policy-rc.d that refuses every start (openssh-server and rsyslog would otherwise start
# an sshd on every interface and a syslogd on /dev/log). The tests run their own daemons.
#
# Also, once: the user `vmwatch-check` that check_by_ssh logs in as (a system user with
# a shell, a home (sshd says on stderr when it cannot chdir there, which check_by_ssh
# reports as a failure) and no password; ssh keys only, from the test's own sshd
# configuration), and sshd's privilege separation directory /run/sshd.
set -euo pipefail

pkgs=(nagios4-core monitoring-plugins-basic dma mandoc openssh-server openssh-client rsyslog logrotate
      graphite-carbon python3-whisper)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
home=/var/lib/vmwatch-check
need_user=
[ "$(getent passwd vmwatch-check | cut -d: -f6)" = "$home" ] && [ -d "$home" ] || need_user=1
[ "${#missing[@]}" -eq 0 ] && [ -z "$need_user" ] && [ -d /run/sshd ] && exit 0
if [ "${1:-}" = --check ]; then
    lacks=()
    [ "${#missing[@]}" -eq 0 ] || lacks+=("packages ${missing[*]}")
    [ -z "$need_user" ] || lacks+=("user vmwatch-check")
    [ -d /run/sshd ] || lacks+=("/run/sshd")
    echo "setup-nagios: this host lacks ${lacks[*]}: run \`make setup\`" \
         "(tests/support/setup-host.sh) as root" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup-nagios: need ${missing[*]} ${need_user:+and user vmwatch-check}; run $0 as root" >&2
    exit 1
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-nagios: installing ${missing[*]}" >&2
    policy=/usr/sbin/policy-rc.d
    if [ -e "$policy" ]; then
        # Someone else's policy: use it only if it refuses starts too.
        rc=0
        "$policy" ssh start >/dev/null 2>&1 || rc=$?
        if [ "$rc" != 101 ]; then
            echo "setup-nagios: $policy allows service starts (exit $rc for 'ssh start');" \
                 "installing openssh-server/rsyslog would start them on this machine. Install" \
                 "${missing[*]} by hand with starts refused, then run this again." >&2
            exit 1
        fi
    else
        printf '#!/bin/sh\n# vmwatch setup-nagios.sh: no service starts during its install\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
    if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null; then
        # Stale or missing package lists: refresh once and retry.
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
if [ -n "$need_user" ]; then
    echo "setup-nagios: user vmwatch-check with home $home (check_by_ssh's login in the tests)" >&2
    getent passwd vmwatch-check >/dev/null ||
        useradd --system --no-create-home --home-dir "$home" --shell /bin/sh vmwatch-check
    usermod -d "$home" vmwatch-check
    install -d -o vmwatch-check -g vmwatch-check -m 0755 "$home"
    # `*`: no password can match, yet the account is not locked (sshd refuses a locked
    # account's key logins when it runs without PAM, as the tests' sshd does).
    usermod -p '*' vmwatch-check
fi
# sshd refuses to start without its privilege separation directory (the package's
# service would make it).
mkdir -p /run/sshd
chmod 0755 /run/sshd
