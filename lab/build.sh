#!/usr/bin/env bash
# Builds the upstream programs meshfed's lab runs, from the Go module proxy
# with the ordinary go client, into .lab/bin/<component>/<version>/ (gitignored;
# nothing upstream is committed). Each build goes through a small wrapper
# go.mod (lab/modules/<component>-<version>.mod) that pins the module and the
# few `replace` lines the proxy needs. A stamp file records the recipe, so a
# second run with nothing changed returns at once.
#   bash lab/build.sh              → everything
#   bash lab/build.sh spire        → only components whose name starts so
#   bash lab/build.sh spire 1.15   → … and only their versions that start so
# Environment: MESHFED_LAB_JOBS (go build -p), GOTOOLCHAIN is set per recipe.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.lab/bin"
only="${1:-}"
only_version="${2:-}"
mkdir -p "$bin"

log() { echo "lab/build: $*" >&2; }

# build COMPONENT VERSION TOOLCHAIN LDFLAGS PACKAGE...
build() {
  local comp="$1" version="$2" toolchain="$3" ldflags="$4"; shift 4
  case "$comp" in "$only"*) ;; *) return 0 ;; esac
  case "$version" in "$only_version"*) ;; *) return 0 ;; esac
  local mod="$root/lab/modules/$comp-$version.mod"
  local dest="$bin/$comp/$version"
  local recipe
  recipe="$(cat "$mod"; echo "$toolchain|$ldflags|$*")"
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$recipe" ]; then return 0; fi
  local work t0=$SECONDS
  work="$(mktemp -d)"
  cp "$mod" "$work/go.mod"
  printf 'package tools\n' >"$work/tools.go"
  log "$comp $version: go build (toolchain $toolchain) …"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  if ! (cd "$work" && GOTOOLCHAIN="$toolchain" GOFLAGS=-mod=mod CGO_ENABLED=1 \
    nice go build -p "${MESHFED_LAB_JOBS:-2}" -trimpath -ldflags "-s -w $ldflags" -o "$dest.tmp/" "$@") \
    >"$dest.tmp/build.log" 2>&1; then
    log "$comp $version: build FAILED; last lines of $dest.tmp/build.log:"
    tail -20 "$dest.tmp/build.log" >&2
    rm -rf "$work"
    return 1
  fi
  rm -rf "$work" "$dest"
  mv "$dest.tmp" "$dest"
  printf '%s' "$recipe" >"$dest/.stamp"
  log "$comp $version: built in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
}

spire() { # VERSION TOOLCHAIN
  build spire "$1" "$2" "-X github.com/spiffe/spire/pkg/common/version.gittag=$1" \
    github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
}

spire 1.15.3 local
spire 1.5.1 local

kubernetes() { # VERSION: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
  local v="$1" x=""
  local minor="${v#*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x="$x -X $pkg.gitVersion=v$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  build kubernetes "$v" local "$x" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
}

kubernetes 1.35.0
# kubernetes 1.29.4: the seed profile's control plane, built once the Kubernetes lab runs both profiles (issue 5).

# etcd 3.5 (v3.5.26 is refused by the proxy, 403; v3.5.27 has no sum database entries for its sibling modules).
build etcd 3.5.24 local "-X go.etcd.io/etcd/api/v3/version.GitSHA=v3.5.24" go.etcd.io/etcd/server/v3
# go names the binary of a …/v3 package after the element before /v3.
if [ -f "$bin/etcd/3.5.24/server" ]; then mv "$bin/etcd/3.5.24/server" "$bin/etcd/3.5.24/etcd"; fi
# kwok (the simulated nodes' controller) and kwokctl (clusters of real control planes).
build kwok 0.8.0 local "" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
