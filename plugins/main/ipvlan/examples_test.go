package main

import (
	"encoding/json"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ipvlan-cni/ipvlan-cni/deploy/kubernetes"
)

// TestDeployExamples reads the NetworkAttachmentDefinition examples of
// deploy/kubernetes (compiled in, so that it runs in the VM too) with the
// plugin's own parser: each spec.config is
// accepted, reads as the example means, and has no key the plugin does
// not read (it ignores unknown keys, so a misspelt field would be
// dropped silently). deploy/kubernetes decodes the manifests strictly and
// checks their IPAM parts.
func TestDeployExamples(t *testing.T) {
	want := map[string]NetConf{
		"nad-l2-host-local.yaml":        {Master: "eth1", Mode: ModeL2, Flag: FlagBridge},
		"nad-l3-host-local.yaml":        {Master: "eth1", Mode: ModeL3, Flag: FlagPrivate},
		"nad-l2-vlan-cluster-ipam.yaml": {Master: "eth0", Mode: ModeL2, Flag: FlagBridge, VLAN: 100},
	}
	ipamType := map[string]string{
		"nad-l2-host-local.yaml":        "host-local",
		"nad-l3-host-local.yaml":        "host-local",
		"nad-l2-vlan-cluster-ipam.yaml": "cluster-ipam",
	}
	files, err := fs.Glob(kubernetes.Examples, "nad-*.yaml")
	if err != nil || len(files) != len(want) {
		t.Fatalf("examples %v (%v), want the %d this test knows", files, err, len(want))
	}
	known := jsonKeys(reflect.TypeOf(NetConf{}))
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := fs.ReadFile(kubernetes.Examples, file)
			if err != nil {
				t.Fatal(err)
			}
			var nad struct {
				Metadata struct{ Name string }   `json:"metadata"`
				Spec     struct{ Config string } `json:"spec"`
			}
			if err := yaml.Unmarshal(data, &nad); err != nil {
				t.Fatal(err)
			}
			conf, err := parseConfig([]byte(nad.Spec.Config))
			if err != nil {
				t.Fatalf("the plugin refuses spec.config: %v", err)
			}
			w, ok := want[filepath.Base(file)]
			if !ok {
				t.Fatalf("no expectation for %s: add it here", file)
			}
			if conf.Name != nad.Metadata.Name || conf.Type != "ipvlan" || conf.Master != w.Master || conf.Mode != w.Mode ||
				conf.Flag != w.Flag || conf.VLAN != w.VLAN || conf.IPAM.Type != ipamType[filepath.Base(file)] {
				t.Errorf("parsed name %q type %q master %q mode %q flag %q vlan %d ipam %q; want %q ipvlan %q %q %q %d %q",
					conf.Name, conf.Type, conf.Master, conf.Mode, conf.Flag, conf.VLAN, conf.IPAM.Type,
					nad.Metadata.Name, w.Master, w.Mode, w.Flag, w.VLAN, ipamType[filepath.Base(file)])
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal([]byte(nad.Spec.Config), &keys); err != nil {
				t.Fatal(err)
			}
			for k := range keys {
				if !known[k] {
					t.Errorf("spec.config has %q, which the plugin does not read", k)
				}
			}
		})
	}
}

// jsonKeys lists the JSON keys a struct decodes, embedded structs' included.
func jsonKeys(t reflect.Type) map[string]bool {
	keys := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k := range jsonKeys(f.Type) {
				keys[k] = true
			}
			continue
		}
		if name != "-" && f.IsExported() {
			keys[name] = true
		}
	}
	return keys
}
