#!/usr/bin/env bash
# Fetches the real schemas rendered objects are validated against, for the
# pinned versions of both profiles, from the Go module proxy with the ordinary
# go client, into .lab/schemas/ (gitignored; nothing upstream is committed):
#   kubernetes/<v>/   OpenAPI v3 of the API server (k8s.io/kubernetes)
#   cert-manager/<v>/ CRDs (github.com/cert-manager/cert-manager deploy/crds)
#   spire-controller-manager/<v>/ CRDs (config/crd/bases)
#   k8s-workload-registrar/<v>/   the SpiffeID CRD (github.com/spiffe/spire)
#   go-spiffe/<v>/    the Workload API proto (proto/spiffe/workload/workload.proto)
#   istio/<v>/        CRDs (istio.io/api kubernetes/customresourcedefinitions.gen.yaml;
#                     istio.io/api is tagged per Istio minor, the newest tag of the line is used)
# Idempotent: a component already copied is skipped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.lab/schemas"
mkdir -p "$out"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

moddir() { (cd "$work" && go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'); }

fetch() { # component version module@version subdir glob
  local dest="$out/$1/$2"
  if [ -f "$dest/.done" ]; then return; fi
  local t0=$SECONDS dir
  dir="$(moddir "$3")"
  [ -n "$dir" ] || { echo "lab/schemas: could not download $3 from the Go module proxy" >&2; exit 1; }
  rm -rf "$dest" && mkdir -p "$dest"
  # shellcheck disable=SC2086
  cp "$dir/$4"/$5 "$dest/"
  chmod -R u+w "$dest"
  touch "$dest/.done"
  echo "lab/schemas: $1 $2 from $3 ($(ls "$dest" | wc -l) files, $((SECONDS - t0))s)"
}

fetch kubernetes 1.29.4 k8s.io/kubernetes@v1.29.4 api/openapi-spec/v3 '*.json'
fetch kubernetes 1.35.0 k8s.io/kubernetes@v1.35.0 api/openapi-spec/v3 '*.json'
fetch cert-manager 1.15.1 github.com/cert-manager/cert-manager@v1.15.1 deploy/crds 'crd-*.yaml'
fetch cert-manager 1.21.2 github.com/cert-manager/cert-manager@v1.21.2 deploy/crds '*.yaml'
fetch spire-controller-manager 0.7.0 github.com/spiffe/spire-controller-manager@v0.7.0 config/crd/bases '*.yaml'
fetch k8s-workload-registrar 1.5.1 github.com/spiffe/spire@v1.5.1 support/k8s/k8s-workload-registrar/mode-crd/config 'spiffeid.spiffe.io_spiffeids.yaml'
fetch istio 1.22.1 istio.io/api@v1.22.1 kubernetes 'customresourcedefinitions.gen.yaml'
fetch istio 1.30.5 istio.io/api@v1.30.3 kubernetes 'customresourcedefinitions.gen.yaml'
# The SPIFFE Workload API as go-spiffe (the version SPIRE 1.15.3 builds with) defines it.
fetch go-spiffe 2.8.1 github.com/spiffe/go-spiffe/v2@v2.8.1 proto/spiffe/workload 'workload.proto'
