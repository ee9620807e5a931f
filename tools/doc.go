// Package tools pins, in a module of its own, the Go programs the test
// tiers build and ship into the VM: crictl (sigs.k8s.io/cri-tools), the
// kubelet's client of containerd's CRI in the runtime tier. Its
// dependencies (Kubernetes' client libraries, a newer gRPC) stay out of the
// plugins' module.
package tools
