#!/usr/bin/env bash
# The README's demo: set up, then run the bundled model and the shipped calibration on the
# demo scan, CRC and COAT side by side. With a display this opens napari; without one
# (or with --headless) it renders in a virtual display and writes screenshots and metrics
# to out/demo/. It then evaluates every method on the bundled synthetic NPZ.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
if [ -n "${DISPLAY:-}" ] && [ "${1:-}" != "--headless" ]; then
  napari-consign demo --alpha 0.3
else
  napari-consign demo --headless --out out/demo --alpha 0.3
  echo "screenshots and metrics: out/demo/"
fi
napari-consign evaluate --samples sample_data/synthetic_samples.npz --methods crc,at,coat \
  --alpha 0.1 --splits 10 --seed 0 --json out/evaluate.json
