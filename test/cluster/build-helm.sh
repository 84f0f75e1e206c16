#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm, pinned in helm/go.mod) from the Go module proxy into a cache
# outside the repo, keyed by that module's content. A cached build returns at once.
# Prints the binary's directory on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/helm" && pwd)
version=$(awk '$1=="require" && $2=="helm.sh/helm/v3"{print $3; exit}' "$here/go.mod")
# helm's Makefile stamps the Kubernetes version it assumes offline (helm template/lint: a chart's
# kubeVersion, deprecation checks) from its client-go, v0.N.x = Kubernetes 1.N; without it, 1.20.
client_go=$(awk '$1=="k8s.io/client-go"{print $2; exit}' "$here/go.mod")
k8s_minor=$(echo "$client_go" | cut -d. -f2)
key="helm-${version}-$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-12)"
out="${POOLVIEW_CACHE:-$HOME/.cache/poolview}/bin/$key"
[ -x "$out/helm" ] && { echo "$out"; exit 0; }
[ "${1:-}" = "--cached-only" ] && exit 3

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9 # one build per cache entry; a concurrent caller waits, then finds the binary
[ -x "$out/helm" ] && { echo "$out"; exit 0; }
echo ">> building helm $version ($(date +%T)), a few minutes on 2 cores" >&2
start=$SECONDS
cd "$here"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in chartutil lint/rules; do
  ldflags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$k8s_minor"
done
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/helm.tmp" helm.sh/helm/v3/cmd/helm >&2
mv "$out/helm.tmp" "$out/helm"
echo ">> built helm in $((SECONDS - start))s" >&2
echo "$out"
