#!/usr/bin/env bash
# Installs mailproxy on a Debian/Ubuntu VPS from a built checkout (npm ci && npm run build), and runs
# again safely: it keeps an edited config, reinstalls packages only when the lock file changed, and
# restarts the instances only when something they read changed.
#
#   sudo bash scripts/install.sh [--node PATH] [--root DIR]
#
#   --node PATH  the Node.js binary the units run (default: system.node of the config, /usr/bin/node);
#                Node 22 or newer
#   --root DIR   install into DIR (a throwaway root for tests): no user, no chown, no systemctl
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

root=""
node=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --node) node="${2:?--node needs a path}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown option $1" >&2; usage ;;
  esac
done

src="$(cd "$(dirname "$0")/.." && pwd)"
app="$root/opt/mailproxy"
etc="$root/etc/mailproxy"
config="$etc/mailproxy.yaml"
state="$root/var/lib/mailproxy"
user=mailproxy
say() { printf 'mailproxy install: %s\n' "$*"; }
die() { printf 'mailproxy install: %s\n' "$*" >&2; exit 1; }

# Node: Haraka 3.3.4's own dependencies declare node >= 22; Node 20 is past its end of life.
node="${node:-/usr/bin/node}"
[ -x "$node" ] || die "no Node.js at $node: install Node.js 22 LTS (e.g. NodeSource's nodejs package) or pass --node PATH"
major="$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 22 ]; then
  die "Node.js at $node is $("$node" --version 2>/dev/null || echo unknown); mailproxy needs 22 or newer (Haraka 3.3.4's dependencies require it). Install Node.js 22 LTS and run again, or pass --node PATH"
fi

[ -f "$src/dist/src/cli.js" ] || die "$src is not built: run 'npm ci && npm run build' there first"

if [ -z "$root" ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (or with --root DIR for a throwaway install)"
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/mailproxy --no-create-home --shell /usr/sbin/nologin "$user"
    say "created system user $user"
  fi
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

# The config is the user's: created once from the example, never overwritten.
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

mkdir -p "$state"
chmod 0750 "$state"
if [ -z "$root" ]; then
  chown "root:$user" "$etc" "$etc/tls" "$config"
  chown "$user:$user" "$state"
fi

mailproxy() { "$node" "$app/bin/mailproxy.js" "$@"; }
unbound_conf="$root/etc/unbound/unbound.conf.d/mailproxy.conf"
rendered="$(mailproxy render --config "$config" --root "${root:-/}" --system)"
printf '%s\n' "$rendered" | grep -v '^wrote ' || true
changed=no
printf '%s\n' "$rendered" | grep -v "unbound.conf.d/" | grep -q '^wrote \|^removed ' && changed=yes
unbound_changed=no
printf '%s\n' "$rendered" | grep -q "^wrote .*unbound.conf.d/\|^removed .*unbound.conf.d/" && unbound_changed=yes

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
  unbound-checkconf >/dev/null || die "unbound-checkconf refuses the configuration with $unbound_conf: fix it, or set outbound.dane: false"
  # Exit 1 only says the key was updated; a real failure shows in the resolver check below.
  unbound-anchor -a /var/lib/unbound/root.key || true
  chown unbound: /var/lib/unbound/root.key 2>/dev/null || true
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
    if [ "$changed" = yes ]; then systemctl try-restart mailproxy-haraka-in.service mailproxy-haraka-out.service; fi
    say "running; check with: $node $app/bin/mailproxy.js health --config $config"
  fi
fi

echo
mailproxy notes --config "$config"
