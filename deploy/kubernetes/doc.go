// Package kubernetes holds the Kubernetes manifests of ipvlan-cni: the
// DaemonSet that installs the plugins on every node (daemonset.yaml) and
// Multus NetworkAttachmentDefinition examples (nad-*.yaml). Its tests
// decode every manifest strictly into the Kubernetes API types and parse
// each network's IPAM part with its plugin's parser; the ipvlan plugin's
// tests read Examples with its own parser.
package kubernetes

import "embed"

// Examples holds the NetworkAttachmentDefinition examples, nad-*.yaml.
//
//go:embed nad-*.yaml
var Examples embed.FS
