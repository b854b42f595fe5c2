#!/usr/bin/env bash
# Ring all-reduce vs Gloo, side by side. Installs Debian's PyTorch (for Gloo) if it is missing;
# tests never need it. Arguments go to the benchmark, e.g. --iters 20 --worlds 2,4.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c "import torch.distributed" 2>/dev/null; then
  apt-get install -y python3-torch
fi
dotnet run -c Release --project bench/AllReduce -- "$@"
