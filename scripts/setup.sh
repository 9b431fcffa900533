#!/usr/bin/env bash
# Set up a fresh machine for napari-consign: system libraries for the virtual display, a venv
# in .venv, torch's CPU wheel FIRST (otherwise pip pulls a multi-GB CUDA build), then the
# project with its test extra. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(xvfb libxcb-icccm4 libxcb-keysyms1)
if ! dpkg -s "${apt_packages[@]}" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
  else
    echo "setup: missing ${apt_packages[*]}; install them with sudo apt-get install" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[test]"
