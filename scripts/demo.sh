#!/usr/bin/env bash
# The README's demo: set up, then run the bundled model and the shipped calibration on the
# demo scan, CRC and COAT side by side. With a display this opens napari; without one
# (or with --headless) it renders in a virtual display and writes screenshots and metrics
# to out/demo/. It then applies the shipped calibration to the demo scan from the command line
# (band files on the scan's grid, volumes in mL) and evaluates the threshold methods over
# random splits of the bundled synthetic NPZ (tables and plots in out/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
if [ -n "${DISPLAY:-}" ] && [ "${1:-}" != "--headless" ]; then
  napari-consign demo
else
  napari-consign demo --headless --out out/demo
  echo "screenshots and metrics: out/demo/"
fi
napari-consign predict --scan sample_data/demo_scan.nii.gz --bundle sample_data/bundles/crc.npz \
  --bundle sample_data/bundles/coat.npz --alpha 0.1,0.3 --out out/predict --overwrite
napari-consign evaluate --samples sample_data/synthetic_samples.npz --methods crc,at,coat \
  --alpha 0.1 --alphas 0.05,0.1,0.2,0.3 --splits 10 --seed 0 --json out/evaluate.json \
  --markdown out/evaluate.md --plots out/plots --overwrite
echo "band files: out/predict/; evaluation: out/evaluate.md, out/plots/"

