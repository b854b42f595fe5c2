#!/usr/bin/env bash
# Question: with workers on separate hosts (network namespaces), does a partition longer than the
# lease, or a ring cut under loss, ever lose or duplicate work, and how long does recovery take?
# Runs the two network-fault tests (tests/Cli.FunctionalTests/NetworkFaultTests*.cs) N times each
# and prints one line per run, as the tests record it. Needs root, iproute2 and nftables (this
# kernel has no netem: nftables drops and a TBF rate limit stand in; bench/README.md (n)).
#   bash bench/NetworkFaults/run.sh [N]      (default 5; about 70 s per run on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
runs="${1:-5}"
project="$root/tests/Cli.FunctionalTests/Orchestrator.Cli.FunctionalTests.csproj"
record="$(mktemp)"
trap 'rm -f "$record"' EXIT
dotnet build "$project" -c Release -nologo -v q -clp:ErrorsOnly >/dev/null
failed=0
for test in A_worker_cut_off A_ring_across; do
  for i in $(seq 1 "$runs"); do
    if ! ORCH_BENCH_RECORD="$record" dotnet test "$project" -c Release --no-build -nologo \
        --filter "FullyQualifiedName~NetworkFaultTests.$test" >"$record.log" 2>&1; then
      echo "run $i of $test FAILED:" >&2
      grep -E "Error Message|Assert|Exception" -A3 "$record.log" | head -20 >&2
      failed=$((failed + 1))
      echo "$test: FAILED" >>"$record"
    fi
  done
done
rm -f "$record.log"
cat "$record"
echo "$failed failed of $((2 * runs)) runs"
exit $((failed > 0))
