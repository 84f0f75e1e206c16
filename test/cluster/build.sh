#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-proxy, kubectl and etcd from the Go module
# proxy into a cache outside the repo, keyed by the pinned versions. A cached build returns at once.
# Prints the binaries' directory on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")
key="k8s-${k8s}-etcd-${etcd}-$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)" # content only, not the path
out="${POOLVIEW_CACHE:-$HOME/.cache/poolview}/bin/$key"
bins=(kube-apiserver kube-controller-manager kube-proxy kubectl etcd)

done_all=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || done_all=0; done
if [ "$done_all" = 1 ]; then echo "$out"; exit 0; fi
# --cached-only: only say where cached binaries are (exit 3 when there are none); `poolview demo` uses it.
if [ "${1:-}" = "--cached-only" ]; then exit 3; fi

mkdir -p "$out"
# One build per cache entry at a time: a concurrent caller waits for it, then finds the binaries.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out/.lock"
  if ! flock -n 9; then
    echo ">> another build.sh is building into $out; waiting for it" >&2
    flock 9
  fi
  done_all=1
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || done_all=0; done
  if [ "$done_all" = 1 ]; then echo "$out"; exit 0; fi
fi
minor=${k8s#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
export CGO_ENABLED=0 GOFLAGS=-mod=mod
cd "$here"
echo ">> downloading modules for Kubernetes $k8s and etcd $etcd (Go module proxy)" >&2
go mod download 2>&1 | tail -n 3 >&2 || true
declare -A pkgs=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [etcd]=go.etcd.io/etcd/server/v3
)
for b in etcd kubectl kube-proxy kube-apiserver kube-controller-manager; do
  [ -x "$out/$b" ] && continue
  echo ">> building $b ($(date +%T)); the first build of kube-apiserver takes a while on 2 cores" >&2
  start=$SECONDS
  t0=$(date +%s)
  # go build is silent for minutes; say it is alive every 30 s.
  ( while sleep 30; do echo ">>   still building $b ($(( $(date +%s) - t0 ))s)" >&2; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "${pkgs[$b]}" >&2
  kill $ticker 2>/dev/null || true
  mv "$out/$b.tmp" "$out/$b"
  echo ">> built $b in $((SECONDS - start))s" >&2
done
echo "$out"
