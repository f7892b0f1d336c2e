#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine: the real services the tests start on
# loopback (apt), and pmaintd with its test extras into .venv (pip). Safe to run again: it installs only
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(influxdb influxdb-client snmpd snmp openssh-server haproxy smartmontools socat sudo systemd)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # The packages' own services must not start on their default ports: tests start private instances.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# grafana-client (the [grafana] extra) depends on urllib3-future, whose wheel overwrites urllib3's files and
# breaks influxdb-client. Built from source with URLLIB3_NO_OVERRIDE=1 it installs only as `urllib3_future`;
# --no-cache-dir so a wheel built earlier without the variable is never reused.
export URLLIB3_NO_OVERRIDE=1
.venv/bin/python -m pip install -q --no-cache-dir --no-binary urllib3-future urllib3-future
.venv/bin/python -m pip install -q --no-binary urllib3-future -e '.[test,grafana]'
.venv/bin/python - <<'EOF'
import importlib.metadata as md
import sys

import urllib3

if urllib3.__version__ != md.version("urllib3"):
    sys.exit(f"urllib3 {md.version('urllib3')} was overwritten by urllib3-future ({urllib3.__version__}): "
             "reinstall urllib3 (pip install --force-reinstall urllib3) and run this script again")
EOF
