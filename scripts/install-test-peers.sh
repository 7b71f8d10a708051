#!/usr/bin/env bash
# Installs the real peers the test suites talk to (Debian packages): Postfix as the Mailcow stand-in,
# swaks as an SMTP client (with IPv6 support), openssl for throwaway certificates, and for DANE: NSD serving
# zones signed with ldns-signzone (ldnsutils), validated by unbound. Run as root (or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in postfix swaks libio-socket-inet6-perl openssl procps iproute2 util-linux systemd python3-minimal pebble testssl.sh unbound nsd ldnsutils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "test peers already installed"
  exit 0
fi
# Postfix asks how to configure the system's own instance; the tests never use that instance.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
