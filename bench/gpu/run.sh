#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU and PyTorch (bench/README.md, section (p)). Prints one
# table, measured side by side in one run:
#   - ResNet-18 (CIFAR stem, batch 256) training images/s on one pre-loaded batch: PyTorch fp32,
#     PyTorch bf16 autocast + channels-last, and the worker's own step in fp32, bf16 and fp16;
#   - the worker's data pipeline against pre-loaded batches on the GPU (target ratio ≥ 0.95);
#   - a 2-rank data-parallel trial with both ranks on the one GPU (their weights must end identical).
# The .NET programs use PyTorch's libtorch (TORCH_LIB, as `orch worker --libtorch-dir` does).
# Where .NET is installed they are built here; otherwise run bench/gpu/pack.sh on a machine that
# has it and copy the repository with its .gpu/ folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
python=${PYTHON:-python3}
"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device visible to PyTorch"' \
  || { echo "bench/gpu/run.sh: needs PyTorch with a CUDA device" >&2; exit 1; }
export TORCH_LIB="${TORCH_LIB:-$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
steps=${STEPS:-100}

if [ -f .gpu/dotnet.tar.xz ] && [ -d .gpu/app ]; then
  runtime=$(mktemp -d)
  trap 'rm -rf "$runtime"' EXIT
  tar -C "$runtime" -xJf .gpu/dotnet.tar.xz
  export DOTNET_ROOT="$runtime" LIBTORCHSHARP="$root/.gpu/libLibTorchSharp.so"
  run() { "$runtime/dotnet" ".gpu/app/Orchestrator.Bench.$1.dll" "${@:2}"; }
elif command -v dotnet >/dev/null 2>&1; then
  for project in GpuThroughput DataPipeline; do
    dotnet build "bench/$project" -c Release -p:TorchBackend=none -nologo -v q -clp:ErrorsOnly
  done
  run() { dotnet "artifacts/bin/Orchestrator.Bench.$1/release/Orchestrator.Bench.$1.dll" "${@:2}"; }
else
  echo "bench/gpu/run.sh: no .NET here and no .gpu/ bundle: run bench/gpu/pack.sh where .NET is installed" >&2
  exit 1
fi

echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1), PyTorch $("$python" -c 'import torch; print(torch.__version__)')"
echo
"$python" bench/gpu/torch_resnet18.py --batch 256 --steps "$steps" > /tmp/orch-gpu-torch.txt
run GpuThroughput --device cuda --batch 256 --steps "$steps" > /tmp/orch-gpu-ours.txt
# The header and the rows, PyTorch's first.
sed -n '1,4p' /tmp/orch-gpu-ours.txt
cat /tmp/orch-gpu-torch.txt
sed -n '5,$p' /tmp/orch-gpu-ours.txt
echo
run DataPipeline --device cuda --resnet --batches 60 --rounds 3
