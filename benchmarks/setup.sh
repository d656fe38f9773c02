#!/usr/bin/env bash
# Installs what the benchmarks drive besides mailaction itself:
#   - Postfix's smtp-sink and smtp-source (Debian package postfix), without starting its daemon;
#   - benchmarks/.venv-mailmerge: the peer tool `mailmerge`, plus aiosmtplib and uvloop for the
#     raw-transport baseline on the uvloop event loop.
# Safe to run again: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV=.venv-mailmerge

if [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/smtp-source ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing postfix for smtp-sink and smtp-source (its daemon is not started)"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Forbid package scripts to start services while installing; removed again on any exit.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  else
    echo "smtp-sink is missing and this is not root with apt-get: install Debian's postfix" \
      "package; the benchmarks that need it will be skipped."
  fi
fi

if [ ! -x "$VENV/bin/mailmerge" ]; then
  echo "Creating benchmarks/$VENV with mailmerge, aiosmtplib and uvloop"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check mailmerge aiosmtplib uvloop
fi
