//go:build tools

// Package tools pins agnhost, the Go webhook the Kubernetes e2e tests use, to the same
// k8s.io/kubernetes release as the local control plane, for `make bench-load`.
package tools

import _ "k8s.io/kubernetes/test/images/agnhost/webhook"
