#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm, pinned in helm/go.mod) from the Go module proxy into a cache
# outside the repo, keyed by that module's content. A cached build returns at once.
# Prints the binary's directory on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/helm" && pwd)
version=$(awk '$1=="require" && $2=="helm.sh/helm/v3"{print $3; exit}' "$here/go.mod")
key="helm-${version}-$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
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
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" -o "$out/helm.tmp" helm.sh/helm/v3/cmd/helm >&2
mv "$out/helm.tmp" "$out/helm"
echo ">> built helm in $((SECONDS - start))s" >&2
echo "$out"
