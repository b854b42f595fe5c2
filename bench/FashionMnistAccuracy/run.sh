#!/usr/bin/env bash
# Question: how accurate is the tutorial CNN on Fashion-MNIST, epoch by epoch, and how long does it
# take on this machine? Trains examples/fashion-mnist-simple-cnn.yaml (5 epochs, full data) and
# prints a markdown table of test accuracy and cumulative wall time per epoch.
# Target: ≥ 0.92 test accuracy within 5 epochs (published 2-conv baselines: 0.876–0.916).
#   bash bench/FashionMnistAccuracy/run.sh [extra orch train options]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$root/orch" train "$root/examples/fashion-mnist-simple-cnn.yaml" --out "$out/run" --json "$@" > "$out/stdout"
echo "| epoch | test accuracy | test loss | train img/s | wall time (s, cumulative) |"
echo "|---|---|---|---|---|"
python3 - "$out/run/metrics.jsonl" <<'PY'
import json, sys
total = 0.0
for line in open(sys.argv[1]):
    m = json.loads(line)
    total += m["seconds"]
    print(f"| {m['epoch']} | {m['val_accuracy']:.4f} | {m['val_loss']:.4f} | {m['images_per_second']:,.0f} | {total:.0f} |")
PY
tail -n 1 "$out/stdout"
