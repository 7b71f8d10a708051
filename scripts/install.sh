#!/usr/bin/env bash
# Installs mailproxy on a Debian/Ubuntu VPS from a built checkout (npm ci && npm run build), and runs
# again safely: it keeps an edited config, reinstalls packages only when the lock file changed, and
# restarts the instances only when something they read changed.
#
#   sudo bash scripts/install.sh [--node PATH] [--root DIR]
#
#   --node PATH  the Node.js (22 or newer) the units, the timers and the mailproxy command run: written
#                into the config as system.node (default: the config's system.node, /usr/bin/node)
#   --root DIR   install into DIR (a throwaway root for tests): no user, no chown, no systemctl; the
#                mailproxy command in DIR/usr/local/bin runs DIR's app and config
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

root=""
node_arg=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --node) node_arg="${2:?--node needs a path}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown option $1" >&2; usage ;;
  esac
done

src="$(cd "$(dirname "$0")/.." && pwd)"
etc="$root/etc/mailproxy"
config="$etc/mailproxy.yaml"
state="$root/var/lib/mailproxy"
user=mailproxy
say() { printf 'mailproxy install: %s\n' "$*"; }
die() { printf 'mailproxy install: %s\n' "$*" >&2; exit 1; }

[ -f "$src/dist/src/cli.js" ] || die "$src is not built: run 'npm ci && npm run build' there first"

# Haraka 3.3.4's own dependencies declare node >= 22; Node 20 is past its end of life.
require_node22() {
  [ -x "$1" ] || die "$2 $1 does not exist: install Node.js 22 LTS (e.g. NodeSource's nodejs package) or pass --node PATH"
  local major
  major="$("$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 22 ] 2>/dev/null || ! [ "$major" -eq "$major" ] 2>/dev/null; then
    die "$2 $1 is $("$1" --version 2>/dev/null || echo unknown); mailproxy needs 22 or newer (Haraka 3.3.4's dependencies require it). Install Node.js 22 LTS and run again, or pass --node PATH"
  fi
}
[ -z "$node_arg" ] || require_node22 "$node_arg" "--node"

# A Node to run the checkout's CLI, which reads and sets the config (any version does); the Node the
# units run is the config's system.node, checked below.
bootstrap="$node_arg"
[ -n "$bootstrap" ] || bootstrap="$(command -v /usr/bin/node node 2>/dev/null | head -n 1 || true)"
[ -n "$bootstrap" ] || die "no Node.js found: install Node.js 22 LTS (e.g. NodeSource's nodejs package) or pass --node PATH"
checkout() { "$bootstrap" "$src/bin/mailproxy.js" "$@"; }

if [ -z "$root" ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (or with --root DIR for a throwaway install)"
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/mailproxy --no-create-home --shell /usr/sbin/nologin "$user"
    say "created system user $user"
  fi
fi

# The config is the user's: created once from the example, never overwritten; --node is the one key the
# installer sets in it, so that the units, the timers, the mailproxy command and check all name one Node.
mkdir -p "$etc/tls"
chmod 0750 "$etc/tls"
first_install=no
if [ ! -e "$config" ]; then
  cp "$src/mailproxy.example.yaml" "$config"
  chmod 0640 "$config"
  first_install=yes
  say "wrote $config from the example: edit it (hostname, public_ipv4, domains), then run this again"
else
  say "kept $config"
fi
if [ -n "$node_arg" ] && [ "$(checkout config get system.node --config "$config")" != "$node_arg" ]; then
  checkout config set system.node "$node_arg" --config "$config" >/dev/null
  say "set system.node: $node_arg in $config"
fi
settings="$(checkout config get system.node system.app_dir --config "$config")" || die "cannot read $config: fix the errors above"
node="$(printf '%s\n' "$settings" | sed -n 1p)"
app="$root$(printf '%s\n' "$settings" | sed -n 2p)"

require_node22 "$node" "system.node"
# The units run with ProtectHome=yes: a Node under a home directory runs here but not for them (203/EXEC).
if [ -z "$root" ]; then
  case "$node" in
    /root/*|/home/*|/run/user/*) die "system.node $node lies under a home directory, which the units hide (ProtectHome=yes): put Node.js 22 elsewhere (e.g. /opt/node22/bin/node) and pass --node PATH" ;;
  esac
fi

# The application: the built tree, then its production packages from the lock file.
mkdir -p "$app"
for item in bin dist haraka-plugins docs package.json package-lock.json README.md mailproxy.example.yaml; do
  rm -rf "${app:?}/$item"
  cp -R "$src/$item" "$app/$item"
done
lock_sum="$(sha256sum "$app/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$app/.installed-lock" 2>/dev/null)" != "$lock_sum" ] || [ ! -d "$app/node_modules/haraka" ]; then
  say "installing packages (npm ci --omit=dev)"
  (cd "$app" && PATH="$(dirname "$node"):$PATH" npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" > "$app/.installed-lock"
fi

mkdir -p "$state"
chmod 0750 "$state"
if [ -z "$root" ]; then
  chown "root:$user" "$etc" "$etc/tls" "$config"
  chown "$user:$user" "$state"
fi

mailproxy() { "$node" "$app/bin/mailproxy.js" "$@"; }

# The mailproxy command on PATH, with the Node the units run.
command_file="$root/usr/local/bin/mailproxy"
mkdir -p "$(dirname "$command_file")"
{
  echo '#!/bin/sh'
  echo '# mailproxy, written by scripts/install.sh: the Node the units run (system.node) and the installed app.'
  if [ -n "$root" ]; then echo ": \"\${MAILPROXY_CONFIG:=$config}\"; export MAILPROXY_CONFIG"; fi
  printf 'exec %q %q "$@"\n' "$node" "$app/bin/mailproxy.js"
} > "$command_file.tmp"
chmod 0755 "$command_file.tmp"
mv -f "$command_file.tmp" "$command_file"
unbound_conf="$root/etc/unbound/unbound.conf.d/mailproxy.conf"
# The MTA-STS policy service (inbound.mta_sts): its unit exists only while it is enabled.
sts_unit=mailproxy-mta-sts.service
rendered="$(mailproxy render --config "$config" --root "${root:-/}" --system)"
printf '%s\n' "$rendered" | grep -v '^wrote ' || true
changed=no
printf '%s\n' "$rendered" | grep -v "unbound.conf.d/\|/$sts_unit\$" | grep -q '^wrote \|^removed ' && changed=yes
unbound_changed=no
printf '%s\n' "$rendered" | grep -q "^wrote .*unbound.conf.d/\|^removed .*unbound.conf.d/" && unbound_changed=yes
sts_changed=no
printf '%s\n' "$rendered" | grep -q "^wrote .*/$sts_unit\$" && sts_changed=yes
sts_enabled="$(mailproxy config get inbound.mta_sts.enabled --config "$config")"
tls_rpt_enabled="$(mailproxy config get outbound.tls_rpt.enabled --config "$config")"

# DANE (outbound.dane): haraka-out trusts the AD bit of a DNSSEC-validating resolver on this host only.
# Debian's unbound validates against the root key that unbound-anchor refreshes at every start; the
# rendered drop-in keeps it on loopback with validation on.
if [ -z "$root" ] && [ -f "$unbound_conf" ]; then
  missing=()
  for pkg in unbound unbound-anchor; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (the DNSSEC-validating resolver DANE needs)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    unbound_changed=yes
  fi
  # The root key first: unbound-checkconf refuses an auto-trust-anchor-file that does not exist yet (Debian
  # makes it from dns-root-data, a recommendation this install leaves out). Exit 1 only says the key was
  # updated; a real failure shows in the resolver check below.
  unbound-anchor -a /var/lib/unbound/root.key || true
  chown unbound: /var/lib/unbound/root.key 2>/dev/null || true
  unbound-checkconf >/dev/null || die "unbound-checkconf refuses the configuration with $unbound_conf: fix it, or set outbound.dane: false"
  systemctl enable --now unbound.service
  if [ "$unbound_changed" = yes ]; then systemctl restart unbound.service; fi
  if ! mailproxy dane resolver --config "$config"; then
    say "WARNING: the DANE resolver does not validate yet: haraka-out keeps mail to the internet queued until it does (systemctl status unbound; mailproxy dane resolver)"
  fi
fi

if [ -z "$root" ]; then
  systemctl daemon-reload
  if [ "$first_install" = yes ]; then
    say "not starting yet: edit $config first"
  else
    mailproxy check --config "$config"
    systemctl enable --now mailproxy-haraka-in.service mailproxy-haraka-out.service mailproxy-health.timer mailproxy-cert-renew.timer
    if [ "$tls_rpt_enabled" = true ]; then
      # The DKIM key of the report emails (made as the owner of haraka-out's state directory), before the
      # restart below, so that the Haraka units start with it out of their reach; the notes print its record.
      mailproxy tls-report key --config "$config" >/dev/null
    fi
    if [ "$changed" = yes ]; then systemctl try-restart mailproxy-haraka-in.service mailproxy-haraka-out.service; fi
    if [ "$sts_enabled" = true ]; then
      # A new or changed unit (another listen address, memory cap) takes a (re)start; a new policy in the
      # config only a reload (SIGHUP), which never closes the listeners.
      systemctl enable "$sts_unit"
      if [ "$sts_changed" = yes ]; then systemctl restart "$sts_unit"; else systemctl start "$sts_unit" && systemctl reload "$sts_unit"; fi
    else
      # Turned off: render removed the unit file; stop what still runs of it and drop its enablement.
      systemctl stop "$sts_unit" >/dev/null 2>&1 || true
      systemctl disable "$sts_unit" >/dev/null 2>&1 || true
    fi
    if [ "$tls_rpt_enabled" = true ]; then
      systemctl enable --now mailproxy-tls-report.timer
    else
      # Render removed both units: stop what is still loaded of them (disable alone finds no file to act on),
      # and clear the timer that, left without the service it starts, would show as failed.
      systemctl stop mailproxy-tls-report.timer mailproxy-tls-report.service >/dev/null 2>&1 || true
      systemctl disable mailproxy-tls-report.timer >/dev/null 2>&1 || true
      systemctl reset-failed mailproxy-tls-report.timer mailproxy-tls-report.service >/dev/null 2>&1 || true
    fi
    say "running; check with: mailproxy health"
  fi
fi

echo
mailproxy notes --config "$config"
