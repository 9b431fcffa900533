#!/usr/bin/env bash
# Set up a fresh machine for napari-consign: system libraries for the virtual display, a venv
# in .venv, torch's CPU wheel FIRST (otherwise pip pulls a multi-GB CUDA build), then the
# project with its test extra. Safe to run again: it only installs what is missing. Prints one
# line per step with the seconds since it started (a fresh set-up takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { echo "[setup $((SECONDS - start)) s] $*" >&2; }

apt_packages=(xvfb libxcb-icccm4 libxcb-keysyms1)
if ! dpkg -s "${apt_packages[@]}" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    step "installing ${apt_packages[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  else
    echo "setup: missing ${apt_packages[*]}; install them with sudo apt-get install" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  step "installing torch 2.13.0 (CPU wheel, about 900 MB unpacked)"
  pip install -q torch==2.13.0
fi
step "installing napari-consign with napari, PyQt6 and the test tools"
pip install -q -e ".[test]"
step "ready: . .venv/bin/activate"
