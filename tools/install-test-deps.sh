#!/usr/bin/env bash
# System packages the test suite uses, from Debian's archive (root only; otherwise say what is missing):
#   chromium  - the report test opens the HTML report in headless Chromium
#   slurm     - the cluster test starts a single-node SLURM (tools/slurm-local.sh installs it on demand)
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then echo "test system packages present"; exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing ${need[*]} and cannot apt-get install (not root or no apt): the tests that need them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
