#!/usr/bin/env bash
# The README's demo: set up, then evaluate the conformal methods on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
napari-consign evaluate --samples sample_data/synthetic_samples.npz --methods crc \
  --alpha 0.1 --splits 20 --seed 0 --json out/evaluate_crc.json
