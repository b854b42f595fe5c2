#!/usr/bin/env bash
# Prepares .gpu/ in the repository root for bench/gpu/run.sh on a GPU machine that has PyTorch but
# no .NET: the .NET runtime (packed), the benchmark programs published without a libtorch (they use
# PyTorch's), and TorchSharp's libLibTorchSharp.so. About 40 MB; .gpu/ is git-ignored.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out=.gpu
mkdir -p "$out"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf "$out/app"
for project in bench/GpuThroughput bench/DataPipeline; do
  echo "pack.sh: publishing $project" >&2
  dotnet publish "$project" -c Release -p:TorchBackend=none -o "$out/app" -nologo -v q -clp:ErrorsOnly
done
rm -rf "$out/app/runtimes/osx"* "$out/app/runtimes/win"*
so=$(find "$out/app/runtimes/linux-x64/native" -name libLibTorchSharp.so 2>/dev/null | head -1)
[ -n "$so" ] || so=$(ls ~/.nuget/packages/torchsharp/*/runtimes/linux-x64/native/libLibTorchSharp.so | sort -V | tail -1)
cp "$so" "$out/libLibTorchSharp.so"
if [ ! -f "$out/dotnet.tar.xz" ]; then
  dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  tar -C "$dotnet_root" -cf - shared/Microsoft.NETCore.App host dotnet | xz -T2 -6 > "$out/dotnet.tar.xz"
fi
du -sh "$out" >&2
