#!/usr/bin/env bash
# Installs the real peers the test suites talk to (Debian packages): Postfix as the Mailcow stand-in,
# swaks as an SMTP client (with IPv6 support), openssl for throwaway certificates, and for DANE: NSD serving
# zones signed with ldns-signzone (ldnsutils), validated by unbound; systemd-nspawn (systemd-container) to
# boot a real systemd in a container for the units' test, where install.sh also needs unbound-anchor (the
# container cannot download it). Run as root (or with sudo). Waits for the dpkg/apt locks when another apt or
# dpkg holds them.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in postfix swaks libio-socket-inet6-perl openssl procps iproute2 util-linux systemd python3-minimal pebble testssl.sh unbound unbound-anchor nsd ldnsutils systemd-container; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "test peers already installed"
  exit 0
fi
# Postfix asks how to configure the system's own instance; the tests never use that instance.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
# Another apt or dpkg (unattended-upgrades, a parallel job) may hold the locks: wait for them, up to 10 minutes
# in all. DPkg::Lock::Timeout makes apt-get wait for dpkg's locks only; the lists lock (update) and the archives
# lock (downloads) fail at once with "Could not get lock", so those are retried.
deadline=$(( $(date +%s) + 600 ))
apt_get() {
  local err
  err="$(mktemp)"
  until apt-get -o DPkg::Lock::Timeout=600 "$@" 2>"$err"; do
    if ! grep -q 'Could not get lock' "$err" || [ "$(date +%s)" -ge "$deadline" ]; then
      cat "$err" >&2
      rm -f "$err"
      return 1
    fi
    echo "install-test-peers: another apt holds a lock, waiting: $(grep -m1 'Could not get lock' "$err")" >&2
    sleep 5
  done
  cat "$err" >&2
  rm -f "$err"
}
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${need[@]}"
