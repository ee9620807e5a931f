package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/clusteripam"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
)

// networkAttachmentDefinition is Multus's k8s.cni.cncf.io/v1 kind, which
// k8s.io/api does not have: the fields Multus reads.
type networkAttachmentDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Config string `json:"config"`
	} `json:"spec"`
}

// decodeStrict decodes one YAML document into v, refusing unknown fields
// and duplicate keys, as kubectl apply --validate=strict does.
func decodeStrict(data []byte, v any) error {
	return yaml.UnmarshalStrict(data, v)
}

// manifests reads every YAML file of this directory.
func manifests(t *testing.T) map[string][]byte {
	t.Helper()
	// The dhcp daemon's DaemonSet lives beside its systemd unit.
	paths, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dhcp, err := filepath.Glob("../dhcp/*.yaml")
	if err != nil || len(dhcp) == 0 {
		t.Fatalf("the dhcp daemon's manifests: %v, %v", dhcp, err)
	}
	paths = append(paths, dhcp...)
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = b
	}
	return files
}

// TestManifestsDecodeStrictly: every YAML file here and in deploy/dhcp is one document of a
// known kind that decodes into its API type with no unknown field.
func TestManifestsDecodeStrictly(t *testing.T) {
	files := manifests(t)
	var kinds []string
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			if regexp.MustCompile(`(?m)^---`).Match(data) {
				t.Fatalf("more than one YAML document: keep one object per file")
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(data, &tm); err != nil {
				t.Fatalf("decode: %v", err)
			}
			kinds = append(kinds, tm.Kind)
			switch tm.Kind {
			case "DaemonSet":
				if tm.APIVersion != "apps/v1" {
					t.Errorf("apiVersion %q, want apps/v1", tm.APIVersion)
				}
				var ds appsv1.DaemonSet
				if err := decodeStrict(data, &ds); err != nil {
					t.Errorf("decode as a DaemonSet: %v", err)
				}
			case "NetworkAttachmentDefinition":
				if tm.APIVersion != "k8s.cni.cncf.io/v1" {
					t.Errorf("apiVersion %q, want k8s.cni.cncf.io/v1", tm.APIVersion)
				}
				var nad networkAttachmentDefinition
				if err := decodeStrict(data, &nad); err != nil {
					t.Errorf("decode as a NetworkAttachmentDefinition: %v", err)
				}
			default:
				t.Errorf("kind %q: the test knows DaemonSet and NetworkAttachmentDefinition", tm.Kind)
			}
		})
	}
	slices.Sort(kinds)
	want := []string{"DaemonSet", "DaemonSet", "NetworkAttachmentDefinition", "NetworkAttachmentDefinition", "NetworkAttachmentDefinition"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("kinds of the manifests (-want +got):\n%s", diff)
	}
}

// TestDecodeStrictRefuses checks the decoder itself: a misspelt field and a
// duplicate key are errors, so that TestManifestsDecodeStrictly means
// something.
func TestDecodeStrictRefuses(t *testing.T) {
	ds, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"misspelt field": strings.Replace(string(ds), "priorityClassName:", "priorityClass:", 1),
		"duplicate key":  strings.Replace(string(ds), "  namespace: kube-system\n", "  namespace: kube-system\n  namespace: default\n", 1),
	} {
		if data == string(ds) {
			t.Fatalf("%s: the replacement matched nothing in daemonset.yaml", name)
		}
		var v appsv1.DaemonSet
		if err := decodeStrict([]byte(data), &v); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	var nad networkAttachmentDefinition
	if err := decodeStrict([]byte("apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: x}\nspec: {config: '{}', conf: '{}'}\n"), &nad); err == nil {
		t.Errorf("a NetworkAttachmentDefinition with spec.conf decoded without error")
	}
}

// makefileImage is the image name make image gives the archive.
func makefileImage(t *testing.T) string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE_REF\s*\?=\s*(\S+)\s*$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no IMAGE_REF ?= NAME:TAG")
	}
	return string(m[1])
}

func TestDaemonSet(t *testing.T) {
	data, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := decodeStrict(data, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Namespace != "kube-system" {
		t.Errorf("namespace %q, want kube-system", ds.Namespace)
	}
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		t.Fatalf("selector: %v", err)
	}
	if selector.Empty() || !selector.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not select the pod template's labels %v", selector, ds.Spec.Template.Labels)
	}
	pod := ds.Spec.Template.Spec
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", pod.PriorityClassName)
	}
	if !pod.HostNetwork {
		t.Errorf("hostNetwork is off: the installer would wait for a pod network that may need these plugins")
	}

	// Every taint is tolerated: an Exists toleration with no key and no
	// effect, checked against taints a node can have.
	for _, taint := range []corev1.Taint{
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute},
		{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/network-unavailable", Effect: corev1.TaintEffectNoSchedule},
		{Key: "example.com/anything", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule},
	} {
		if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(klog.Background(), &taint, false) }) {
			t.Errorf("taint %s is not tolerated", taint.ToString())
		}
	}
	everything := slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	})
	if !everything {
		t.Errorf("tolerations %v: want {operator: Exists}, which tolerates every taint", pod.Tolerations)
	}

	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("%d containers and %d init containers, want one container", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if want := makefileImage(t); c.Image != want {
		t.Errorf("image %q, want %q, the name make image gives the archive", c.Image, want)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy %q, want IfNotPresent (an imported image is in no registry)", c.ImagePullPolicy)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's entrypoint, /installer", c.Command)
	}
	requests := map[corev1.ResourceName]resource.Quantity{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("64Mi"),
	}
	for r, most := range requests {
		q, ok := c.Resources.Requests[r]
		if !ok || q.Sign() <= 0 || q.Cmp(most) > 0 {
			t.Errorf("%s request %v: want one above 0 and at most %v", r, q.String(), most.String())
		}
	}

	// The installer's -dst is the mount of the host's /opt/cni/bin.
	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	var dst string
	for _, m := range c.VolumeMounts {
		if hostPaths[m.Name] == "/opt/cni/bin" {
			if m.ReadOnly {
				t.Errorf("the mount of /opt/cni/bin is read-only")
			}
			dst = m.MountPath
		}
	}
	if dst != "/host/opt/cni/bin" {
		t.Fatalf("the host's /opt/cni/bin is mounted at %q, want /host/opt/cni/bin, the installer's default -dst", dst)
	}
	for _, arg := range c.Args {
		if v, ok := strings.CutPrefix(arg, "-dst="); ok && v != dst {
			t.Errorf("installer -dst=%s, but /opt/cni/bin is mounted at %s", v, dst)
		}
		if v, ok := strings.CutPrefix(arg, "-src="); ok && v != "/plugins" {
			t.Errorf("installer -src=%s, but the image has the plugins in /plugins", v)
		}
	}
}

type rangeText struct{ Subnet, RangeStart, RangeEnd, Gateway string }

func rangesText(sets []allocator.RangeSet) [][]rangeText {
	var out [][]rangeText
	for _, set := range sets {
		var s []rangeText
		for _, r := range set {
			s = append(s, rangeText{r.Subnet.String(), r.RangeStart.String(), r.RangeEnd.String(), r.Gateway.String()})
		}
		out = append(out, s)
	}
	return out
}

// TestNetworkAttachmentDefinitions parses each example's spec.config with
// its IPAM plugin's parser and checks that it reads what the example means.
// The ipvlan plugin's own parser reads the same examples in its package
// (plugins/main/ipvlan, TestDeployExamples).
func TestNetworkAttachmentDefinitions(t *testing.T) {
	tests := []struct {
		file string
		name string
		ipam func(t *testing.T, config []byte)
	}{
		{
			file: "nad-l2-host-local.yaml",
			name: "ipvlan-l2",
			ipam: func(t *testing.T, config []byte) {
				c, err := hostlocal.ParseConfig(config, "")
				if err != nil {
					t.Fatalf("host-local: %v", err)
				}
				want := [][]rangeText{{{"192.168.50.0/24", "192.168.50.100", "192.168.50.199", "192.168.50.1"}}}
				if diff := cmp.Diff(want, rangesText(c.RangeSets)); diff != "" {
					t.Errorf("host-local ranges (-want +got):\n%s", diff)
				}
				if len(c.Routes) != 0 {
					t.Errorf("routes %v, want none: the pod keeps its cluster network's default route", c.Routes)
				}
			},
		},
		{
			file: "nad-l3-host-local.yaml",
			name: "ipvlan-l3",
			ipam: func(t *testing.T, config []byte) {
				c, err := hostlocal.ParseConfig(config, "")
				if err != nil {
					t.Fatalf("host-local: %v", err)
				}
				want := [][]rangeText{{{"10.60.0.0/24", "10.60.0.1", "10.60.0.254", "10.60.0.1"}}}
				if diff := cmp.Diff(want, rangesText(c.RangeSets)); diff != "" {
					t.Errorf("host-local ranges (-want +got):\n%s", diff)
				}
			},
		},
		{
			file: "nad-l2-vlan-cluster-ipam.yaml",
			name: "ipvlan-vlan100",
			ipam: func(t *testing.T, config []byte) {
				c, err := clusteripam.ParseConfig(config, "", func() (string, error) { return "node-1", nil })
				if err != nil {
					t.Fatalf("cluster-ipam: %v", err)
				}
				want := [][]rangeText{{{"10.100.0.0/16", "10.100.0.1", "10.100.255.254", "10.100.0.1"}}}
				if diff := cmp.Diff(want, rangesText(c.RangeSets)); diff != "" {
					t.Errorf("cluster-ipam ranges (-want +got):\n%s", diff)
				}
				wantEtcd := []string{"http://10.0.0.11:2379", "http://10.0.0.12:2379", "http://10.0.0.13:2379"}
				if diff := cmp.Diff(wantEtcd, c.Etcd.Endpoints); diff != "" {
					t.Errorf("etcd endpoints (-want +got):\n%s", diff)
				}
				if c.Etcd.Prefix != "/cluster-ipam/" || c.Etcd.DialTimeout != 5*time.Second {
					t.Errorf("etcd prefix %q, dialTimeout %v; want /cluster-ipam/, 5s", c.Etcd.Prefix, c.Etcd.DialTimeout)
				}
				if diff := cmp.Diff([]int{26}, c.BlockBits); diff != "" {
					t.Errorf("block prefix lengths (-want +got):\n%s", diff)
				}
				if c.Node != "node-1" {
					t.Errorf("node %q, want the host name, node-1: the example sets no node", c.Node)
				}
			},
		},
	}
	files := manifests(t)
	var nads int
	for _, data := range files {
		if bytes.Contains(data, []byte("\nkind: NetworkAttachmentDefinition\n")) {
			nads++
		}
	}
	if nads != len(tests) {
		t.Errorf("%d NetworkAttachmentDefinitions here, %d checked: add the new one to this test", nads, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, ok := files[tt.file]
			if !ok {
				t.Fatalf("%s is missing", tt.file)
			}
			var nad networkAttachmentDefinition
			if err := decodeStrict(data, &nad); err != nil {
				t.Fatal(err)
			}
			config := []byte(nad.Spec.Config)
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(config, &keys); err != nil {
				t.Fatalf("spec.config is no JSON object: %v", err)
			}
			if nad.Name != tt.name {
				t.Errorf("metadata.name %q, want the network's name %q", nad.Name, tt.name)
			}
			if got := string(keys["name"]); got != `"`+tt.name+`"` {
				t.Errorf("spec.config names the network %s, want %q", got, tt.name)
			}
			tt.ipam(t, config)
		})
	}
}
