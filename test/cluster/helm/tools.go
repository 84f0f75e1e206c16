//go:build tools

// Package tools records the command build-helm.sh compiles, so `go mod tidy` keeps its modules.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
