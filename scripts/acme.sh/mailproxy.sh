#!/usr/bin/env sh
# shellcheck disable=SC2034

# acme.sh deploy hook for mailproxy: hands the new key and certificate to `mailproxy cert deploy`, which
# checks them (key matches, valid now, names cover hostname, chain verifies), installs them so that
# Haraka never sees a mismatched pair, makes sure every TLS listener serves the new certificate and
# rolls back otherwise. Its exit status is this hook's: a refused or failed deploy fails the acme.sh run,
# and the certificate served before stays in place.
#
# Install it from the mailproxy checkout into acme.sh's deploy directory, as the user that runs acme.sh
# (root: `mailproxy cert deploy` writes under /etc/mailproxy and may restart haraka-out):
#
#   cp scripts/acme.sh/mailproxy.sh ~/.acme.sh/deploy/mailproxy.sh
#
# Deploy once by hand; acme.sh then runs the hook after every renewal, with the settings it saved:
#
#   acme.sh --deploy -d mx.example.com --deploy-hook mailproxy
#
# Settings (environment variables; acme.sh saves the ones you set in the domain's config as
# SAVED_DEPLOY_MAILPROXY_* and reuses them on later runs when they are not set):
#
#   DEPLOY_MAILPROXY_CMD     how to run mailproxy, split at spaces (no quoting)
#                            default: /usr/local/bin/mailproxy (the command scripts/install.sh
#                            writes: the Node the units run, and the installed app)
#   DEPLOY_MAILPROXY_CONFIG  the config file
#                            default: /etc/mailproxy/mailproxy.yaml
#
# What it runs: $DEPLOY_MAILPROXY_CMD cert deploy --config CONFIG --key <acme.sh key>
#   --cert <acme.sh fullchain> [--chain <acme.sh ca.cer>]
# and returns its status: 0 deployed (or already served), 1 refused, failed or rolled back, 2 usage.

########  Public functions #####################

# domain keyfile certfile cafile fullchain
mailproxy_deploy() {
  _cdomain="$1"
  _ckey="$2"
  _ccert="$3"
  _cca="$4"
  _cfullchain="$5"

  DEPLOY_MAILPROXY_CMD_DEFAULT="/usr/local/bin/mailproxy"
  DEPLOY_MAILPROXY_CONFIG_DEFAULT="/etc/mailproxy/mailproxy.yaml"

  _debug _cdomain "$_cdomain"
  _debug _ckey "$_ckey"
  _debug _ccert "$_ccert"
  _debug _cca "$_cca"
  _debug _cfullchain "$_cfullchain"

  # Set now: saved for the next runs. Unset: the saved value, or else the default.
  _getdeployconf DEPLOY_MAILPROXY_CMD
  if [ -n "$DEPLOY_MAILPROXY_CMD" ]; then
    _savedeployconf DEPLOY_MAILPROXY_CMD "$DEPLOY_MAILPROXY_CMD"
  else
    DEPLOY_MAILPROXY_CMD="$DEPLOY_MAILPROXY_CMD_DEFAULT"
  fi
  _debug2 DEPLOY_MAILPROXY_CMD "$DEPLOY_MAILPROXY_CMD"

  _getdeployconf DEPLOY_MAILPROXY_CONFIG
  if [ -n "$DEPLOY_MAILPROXY_CONFIG" ]; then
    _savedeployconf DEPLOY_MAILPROXY_CONFIG "$DEPLOY_MAILPROXY_CONFIG"
  else
    DEPLOY_MAILPROXY_CONFIG="$DEPLOY_MAILPROXY_CONFIG_DEFAULT"
  fi
  _debug2 DEPLOY_MAILPROXY_CONFIG "$DEPLOY_MAILPROXY_CONFIG"

  if [ -z "$_ckey" ] || [ -z "$_cfullchain" ]; then
    _err "mailproxy: acme.sh passed no key or full-chain file for $_cdomain"
    return 1
  fi

  set -- --config "$DEPLOY_MAILPROXY_CONFIG" --key "$_ckey" --cert "$_cfullchain"
  # acme.sh's CA file (the issuer chain): what the new certificate is verified against.
  if [ -n "$_cca" ] && [ -s "$_cca" ]; then
    set -- "$@" --chain "$_cca"
  fi

  _info "mailproxy: $DEPLOY_MAILPROXY_CMD cert deploy $*"
  # The command is split at spaces on purpose (interpreter and script).
  # shellcheck disable=SC2086
  $DEPLOY_MAILPROXY_CMD cert deploy "$@"
  _ret="$?"
  if [ "$_ret" != "0" ]; then
    _err "mailproxy cert deploy failed with status $_ret: its output above says why"
    return "$_ret"
  fi
  _info "mailproxy: the new certificate of $_cdomain is deployed"
  return 0
}
