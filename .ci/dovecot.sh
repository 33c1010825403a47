#!/usr/bin/env bash
# A real IMAP server for tests/mail_imap.rs: Dovecot (Debian's dovecot-imapd) with its own
# config, state and log under one state dir, listening on 127.0.0.1 only:
#   IMAP  on 127.0.0.1:${NIGHTDESK_IMAP_PORT:-10143}  (plaintext; loopback only)
#   IMAPS on 127.0.0.1:${NIGHTDESK_IMAPS_PORT:-10993} (certificate signed by a test CA:
#         trust $STATE/ca.pem)
# One user, nightdesk / nightdesk-imap-test, with a Maildir under the state dir.
# Idempotent: a second run rewrites the config and reloads the running server.
# Prints nothing on success but one line naming the ports and the CA file.
set -euo pipefail

STATE=${NIGHTDESK_DOVECOT_DIR:-/tmp/nightdesk-dovecot}
IMAP_PORT=${NIGHTDESK_IMAP_PORT:-10143}
IMAPS_PORT=${NIGHTDESK_IMAPS_PORT:-10993}
IMAP_USER=nightdesk
IMAP_PASSWORD=nightdesk-imap-test

# --- install -------------------------------------------------------------------------
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "dovecot is not installed and this is not root: apt-get install dovecot-imapd" >&2
    exit 1
  fi
  # No init system here: keep the package's postinst from starting (or failing to start)
  # the system-wide Dovecot. Debian's policy-rc.d convention: exit 101 = "not allowed".
  policy_made=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  install_dovecot() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      dovecot-imapd >/dev/null
  }
  status=0
  install_dovecot || { apt-get update -q >/dev/null && install_dovecot; } || status=$?
  if [ -n "$policy_made" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$status" -ne 0 ]; then
    echo "could not install dovecot-imapd (apt-get exit $status)" >&2
    exit 1
  fi
fi
PATH=$PATH:/usr/sbin:/sbin

# --- state dir, users, certificates -------------------------------------------------------
mkdir -p "$STATE"/run "$STATE"/lib "$STATE"/mail "$STATE"/home
chmod 755 "$STATE" "$STATE"/run "$STATE"/lib
uid=$(id -u)
gid=$(id -g)
me=$(id -un)

# Mail processes never run as root in Dovecot ("Mail access not allowed for root"). As
# root, they run as a dedicated unprivileged system user that owns the Maildir; the login
# and internal processes keep Debian's (dovenull, dovecot). Not as root, every process
# runs as the user running this script, and nothing is chrooted.
if [ "$uid" -eq 0 ]; then
  mail_user=nightdesk-imap
  if ! id -u "$mail_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      --user-group "$mail_user"
  fi
  mail_uid=$(id -u "$mail_user")
  mail_gid=$(id -g "$mail_user")
  chown -R "$mail_uid:$mail_gid" "$STATE/mail" "$STATE/home"
  internal_users="default_internal_user = dovecot
default_login_user = dovenull"
  no_chroot=""
else
  mail_uid=$uid
  mail_gid=$gid
  internal_users="default_internal_user = $me
default_internal_group = $(id -gn)
default_login_user = $me"
  no_chroot="  chroot ="
fi

# A test CA and a server certificate for 127.0.0.1 and localhost signed by it (webpki
# refuses a self-signed CA certificate used as the server's own).
if [ ! -s "$STATE/ca.pem" ] || [ ! -s "$STATE/server.pem" ] || [ ! -s "$STATE/server.key" ]; then
  (
    cd "$STATE"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=nightdesk test CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf '%s\n' \
      "basicConstraints = critical, CA:FALSE" \
      "keyUsage = critical, digitalSignature" \
      "extendedKeyUsage = serverAuth" \
      "subjectAltName = DNS:localhost, IP:127.0.0.1" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile server.ext -out server.pem 2>/dev/null
    chmod 600 ca.key server.key
    rm -f server.csr
  )
fi

# user:password:uid:gid:gecos:home:shell. uid and gid stay empty: they come from mail_uid and
# mail_gid below.
printf '%s:{PLAIN}%s:::::\n' "$IMAP_USER" "$IMAP_PASSWORD" >"$STATE/passwd"
chmod 644 "$STATE/passwd"

cat >"$STATE/dovecot.conf" <<EOF
# Written by .ci/dovecot.sh; rewritten on every run.
instance_name = nightdesk-test
base_dir = $STATE/run
state_dir = $STATE/lib
protocols = imap
listen = 127.0.0.1
log_path = $STATE/dovecot.log
info_log_path = $STATE/dovecot.log
$internal_users
mail_uid = $mail_uid
mail_gid = $mail_gid

ssl = yes
ssl_cert = <$STATE/server.pem
ssl_key = <$STATE/server.key
ssl_min_protocol = TLSv1.2
# Loopback only, and a test user: plaintext login is fine on port $IMAP_PORT.
disable_plaintext_auth = no
auth_mechanisms = plain login
# The tests try a wrong password on purpose: no delay for it, and no penalty that would
# slow the other tests' logins from 127.0.0.1.
auth_failure_delay = 0

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $STATE/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $STATE/passwd
}
mail_home = $STATE/home/%u
mail_location = maildir:$STATE/mail/%u
namespace inbox {
  inbox = yes
  separator = /
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
$no_chroot
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
$no_chroot
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF

# --- start or reload ---------------------------------------------------------------------
port_answers() {
  # An IMAP greeting within 3 s.
  timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3 | grep -q '^\* OK'" 2>/dev/null
}

# The Dovecot of this state dir runs: its master.pid names a live dovecot process (not a
# PID reused by something else since).
ours_running() {
  local pid
  pid=$(cat "$STATE/run/master.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dovecot ]
}

fail() {
  echo "$1" >&2
  if [ -f "$STATE/dovecot.log" ]; then
    echo "--- last lines of $STATE/dovecot.log ---" >&2
    tail -n 30 "$STATE/dovecot.log" >&2
  fi
  exit 1
}

doveconf -c "$STATE/dovecot.conf" -n >/dev/null 2>"$STATE/doveconf.err" \
  || fail "dovecot rejects $STATE/dovecot.conf: $(cat "$STATE/doveconf.err")"

if ours_running && port_answers "$IMAP_PORT"; then
  dovecot -c "$STATE/dovecot.conf" reload || fail "dovecot reload failed"
elif port_answers "$IMAP_PORT"; then
  fail "something else already answers on 127.0.0.1:$IMAP_PORT (not the Dovecot of $STATE)"
else
  rm -f "$STATE/run/master.pid" # stale, from a Dovecot that was killed
  dovecot -c "$STATE/dovecot.conf" || fail "dovecot did not start"
fi

for _ in $(seq 1 60); do
  if port_answers "$IMAP_PORT"; then
    echo "dovecot: imap://127.0.0.1:$IMAP_PORT imaps://127.0.0.1:$IMAPS_PORT user $IMAP_USER, CA $STATE/ca.pem"
    exit 0
  fi
  sleep 0.5
done
fail "dovecot did not answer on 127.0.0.1:$IMAP_PORT within 30 s"
