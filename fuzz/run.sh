#!/usr/bin/env bash
# Fuzzes the parsers with AFL++ and SharpFuzz: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# (default: 15 s for each of sweep, trial, idx-images, idx-labels, cifar, checkpoint, gradient-hello).
# FUZZ_SEED=N fixes AFL++'s random seed and FUZZ_EXECS=N stops each target after N runs, so that a
# short run (CI: .ci/run) explores the same inputs every time instead of failing by chance.
# Needs Debian's afl++; the SharpFuzz tool comes from .config/dotnet-tools.json. Instruments copies
# of Orchestrator.Shared.dll and Orchestrator.Worker.dll under artifacts/fuzz, runs afl-fuzz per
# target from fuzz/corpus/TARGET, and ends with one line per target. Exit 1 when any target has a
# crash or hang: each input is kept under artifacts/fuzz/findings/TARGET; replay it with
#   dotnet artifacts/bin/Orchestrator.Fuzz/release/orch-fuzz.dll TARGET FILE
# and add it to fuzz/regressions/TARGET (the unit tests replay that folder) once fixed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-15}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(sweep trial idx-images idx-labels cifar checkpoint gradient-hello)
command -v afl-fuzz >/dev/null || { echo "fuzz/run.sh: afl-fuzz is missing: apt-get install afl++" >&2; exit 2; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

out="$root/artifacts/fuzz"
rm -rf "$out/bin" "$out/findings"
mkdir -p "$out/findings"
dotnet tool restore >/dev/null
dotnet build fuzz/Orchestrator.Fuzz/Orchestrator.Fuzz.csproj -c Release -nologo -v q -clp:ErrorsOnly
# A copy of the build (hard links: libtorch is large) whose two assemblies are instrumented in place.
cp -al "$root/artifacts/bin/Orchestrator.Fuzz/release" "$out/bin"
for dll in Orchestrator.Shared.dll Orchestrator.Worker.dll; do
  cp --remove-destination "$root/artifacts/bin/Orchestrator.Fuzz/release/$dll" "$out/bin/$dll"
  dotnet sharpfuzz "$out/bin/$dll" >/dev/null
done
# Seeds from the plain build: instrumented code runs only under afl-fuzz.
dotnet "$root/artifacts/bin/Orchestrator.Fuzz/release/orch-fuzz.dll" seed "$out/seeds"

export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_QUIET=1
status=0
for target in "${targets[@]}"; do
  seeds="$root/fuzz/corpus/$target"
  [ -d "$seeds" ] || seeds="$out/seeds/$target"
  findings="$out/findings/$target"
  # -t: a .NET start-up is slow, and an input may legitimately take a while; -m none: the runtime reserves much address space.
  repeatable=()
  [ -n "${FUZZ_SEED:-}" ] && repeatable+=(-s "$FUZZ_SEED")
  [ -n "${FUZZ_EXECS:-}" ] && repeatable+=(-E "$FUZZ_EXECS")
  afl-fuzz -i "$seeds" -o "$findings" -t 5000 -m none -V "$seconds" "${repeatable[@]}" -- "$(command -v dotnet)" "$out/bin/orch-fuzz.dll" "$target" >"$out/$target.log" 2>&1 \
    || { echo "fuzz $target: afl-fuzz failed (see $out/$target.log)"; status=1; continue; }
  stats="$findings/default/fuzzer_stats"
  execs=$(sed -n 's/^execs_done *: *//p' "$stats"); paths=$(sed -n 's/^corpus_count *: *//p' "$stats")
  crashes=$(find "$findings/default/crashes" -type f -name 'id:*' | wc -l); hangs=$(find "$findings/default/hangs" -type f -name 'id:*' | wc -l)
  echo "fuzz $target: $execs runs, $paths inputs in the corpus, $crashes crashes, $hangs hangs"
  if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then status=1; fi
done
exit "$status"
