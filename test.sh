#!/usr/bin/env bash
# Runs every test of the solution and ends with one line: "N passed, N failed, N skipped" (a skipped test fails the run).
# Needs the Debian packages dataset-fashion-mnist (real data for the training tests), redis-server
# and prometheus (the tests start their own servers on free ports), python3-torch and python3-onnx (exported
# models are loaded in Debian's PyTorch and ONNX checker), and podman with buildah, runc,
# uidmap and mmdebstrap (the container test runs the images it builds here), iproute2 and nftables (the
# network-fault tests put workers in network namespaces; they need root, as CI has); .ci/run installs them.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "test.sh: Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (or run .ci/run)" >&2
  exit 1
fi
if ! /usr/bin/python3 -c 'import torch, onnx' >/dev/null 2>&1; then
  echo "test.sh: Debian's python3-torch and python3-onnx are missing (the interop tests load exported models in them): apt-get install python3-torch python3-onnx (or run .ci/run)" >&2
  exit 1
fi
for tool in redis-server prometheus podman mmdebstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: $tool is missing (the tests start their own): apt-get install $tool (or run .ci/run)" >&2
    exit 1
  fi
done
for tool in ip:iproute2 tc:iproute2 nft:nftables; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "test.sh: ${tool%%:*} is missing (the network-fault tests need it): apt-get install ${tool#*:} (or run .ci/run)" >&2
    exit 1
  fi
done
results="$root/artifacts/test-results"
rm -rf "$results"
dotnet build Orchestrator.sln -c Release -nologo -v q -clp:ErrorsOnly || { echo "0 passed, 1 failed (build)"; exit 1; }
# The images the container test runs, from this tree: a Debian base from the apt mirror (no registry
# here; made once), then coordinator and CPU worker. containers/podman-sandbox.conf unless set.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/containers/podman-sandbox.conf}"
base=localhost/orchestrator/debian-base:bookworm
{ containers/debian-base.sh "$base" && containers/build.sh --base "$base" coordinator worker; } \
  || { echo "0 passed, 1 failed (container images)"; exit 1; }
status=0
# One assembly at a time (two cores; several test classes train models), each with its own result file.
for project in tests/*/*.csproj; do
  name=$(basename "$project" .csproj)
  dotnet test "$project" -c Release --no-build -nologo --logger "trx;LogFileName=$name.trx" --results-directory "$results" "$@" || status=1
done
passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  line=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$line"); f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$line")
  # xUnit's skipped tests are in the total but not among the executed ones.
  t=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$line"); e=$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$line")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${t:-0} - ${e:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
# A skipped test is not a passing one: the run fails until it runs again or is removed.
if [ "$skipped" -gt 0 ]; then
  echo "test.sh: $skipped test(s) skipped:" >&2
  grep -ho 'testName="[^"]*"[^>]*outcome="NotExecuted"' "$results"/*.trx | sed 's/testName="\([^"]*\)".*/  \1/' >&2
  status=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
