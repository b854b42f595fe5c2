#!/usr/bin/env bash
# Builds the container images: publishes each program self-contained (no SDK in the image), then
# builds its Containerfile with that output as the context.
#
#   containers/build.sh [--base IMAGE] [--tag TAG] [--prefix NAME] [IMAGE...]
#
# IMAGE: coordinator, worker (CPU, also the `orch` CLI), worker-cuda; default: coordinator worker.
# --base replaces every chosen Containerfile's BASE (the production defaults are Microsoft's .NET
# images and a PyTorch CUDA image; on a machine without a registry, a local Debian 12 image:
# containers/debian-base.sh makes one). --prefix names the images PREFIX/IMAGE:TAG
# (default orchestrator/…:dev). ORCH_CONTAINER_ENGINE picks podman (default) or docker.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
engine="${ORCH_CONTAINER_ENGINE:-podman}"
base="" tag="dev" prefix="orchestrator" images=()
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="${2:?--base needs an image}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a tag}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a name}"; shift 2 ;;
    -h|--help) usage ;;
    coordinator|worker|worker-cuda) images+=("$1"); shift ;;
    *) echo "containers/build.sh: unknown argument '$1' (images: coordinator, worker, worker-cuda)" >&2; exit 2 ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(coordinator worker)
command -v "$engine" >/dev/null || { echo "containers/build.sh: $engine is not installed" >&2; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

publish() { # project output [msbuild properties...]
  local project="$1" out="$2"; shift 2
  rm -rf "$out"
  # WeakenLibTorchSharpAlways: the image's libstdc++ decides, not this machine's (build/TorchSharp.Debian.targets).
  dotnet publish "$root/$project" -c Release -r linux-x64 --self-contained -nologo -v q -clp:ErrorsOnly \
    -p:WeakenLibTorchSharpAlways=true -o "$out" "$@"
}

for image in "${images[@]}"; do
  out="$root/artifacts/images/$image"
  echo "containers/build.sh: publishing $image" >&2
  case "$image" in
    coordinator) publish src/Coordinator/Orchestrator.Coordinator.csproj "$out" ;;
    worker) publish src/Cli/Orchestrator.Cli.csproj "$out" -p:TorchBackend=cpu ;;
    worker-cuda) publish src/Cli/Orchestrator.Cli.csproj "$out" -p:TorchBackend=none ;;
  esac
  # libtorch's Python binding and its test libraries: nothing here loads them.
  rm -f "$out"/libtorch_python.so "$out"/libjitbackend_test.so "$out"/libtorchbind_test.so \
        "$out"/libbackend_with_compiler.so "$out"/libaoti_custom_ops.so "$out"/libnnapi_backend.so "$out"/libshm.so
  if [ "$image" = worker-cuda ] && ls "$out"/libtorch_cpu.so >/dev/null 2>&1; then
    echo "containers/build.sh: the CUDA worker's output carries a CPU libtorch" >&2; exit 1
  fi
  args=(build --quiet -f "$root/containers/$image.Containerfile" -t "$prefix/$image:$tag")
  [ -n "$base" ] && args+=(--build-arg "BASE=$base")
  echo "containers/build.sh: building $prefix/$image:$tag" >&2
  "$engine" "${args[@]}" "$out" >/dev/null
done
