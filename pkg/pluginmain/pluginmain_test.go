package pluginmain

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

var cniVars = []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "CNI_NETNS_OVERRIDE"}

// outcome is what one invocation did: the error returned, the verb called
// with its arguments, and what went to stdout and stderr.
type outcome struct {
	err            *types.Error
	called         string
	args           CmdArgs
	stdout, stderr string
}

// recorder gives every verb a stub that records the call and returns ret.
func recorder(o *outcome, ret error) Funcs {
	verb := func(name string) func(*CmdArgs) error {
		return func(a *CmdArgs) error {
			o.called, o.args = name, *a
			return ret
		}
	}
	return Funcs{Add: verb("ADD"), Del: verb("DEL"), Check: verb("CHECK"), GC: verb("GC"), Status: verb("STATUS")}
}

var info = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// runOurs runs Run on env and stdin.
func runOurs(env map[string]string, stdin string, ret error) outcome {
	var o outcome
	var out, errOut strings.Builder
	o.err = Run(recorder(&o, ret), info, "test plugin", func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	o.stdout, o.stderr = out.String(), errOut.String()
	return o
}

// runSkel runs cni's skel on the same input, through the process's
// environment and standard files as skel reads them.
func runSkel(t *testing.T, env map[string]string, stdin string, ret error) outcome {
	t.Helper()
	for _, k := range cniVars {
		t.Setenv(k, env[k])
	}
	dir := t.TempDir()
	in, err := os.Create(dir + "/stdin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.WriteString(stdin); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dir + "/stdout")
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := os.Create(dir + "/stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved := [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
	os.Stdin, os.Stdout, os.Stderr = in, out, errOut
	var o outcome
	f := recorder(&o, ret)
	conv := func(v func(*CmdArgs) error) func(*skel.CmdArgs) error {
		return func(a *skel.CmdArgs) error { return v((*CmdArgs)(a)) }
	}
	o.err = skel.PluginMainFuncsWithError(skel.CNIFuncs{Add: conv(f.Add), Del: conv(f.Del), Check: conv(f.Check), GC: conv(f.GC), Status: conv(f.Status)}, info, "test plugin")
	os.Stdin, os.Stdout, os.Stderr = saved[0], saved[1], saved[2]
	for _, fl := range []*os.File{in, out, errOut} {
		fl.Close()
	}
	read := func(name string) string {
		b, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	o.stdout, o.stderr = read("stdout"), read("stderr")
	return o
}

func withEnv(base map[string]string, kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestSameAsSkel runs skel and Run on the same environments and
// configurations and wants the same outcome: error code, message and
// details, the verb called and its arguments, and the output.
func TestSameAsSkel(t *testing.T) {
	add := map[string]string{
		"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent/netns",
		"CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": "IP=10.1.2.3",
	}
	conf := func(v string) string { return `{"cniVersion":"` + v + `","name":"net1","type":"ipvlan"}` }
	good := conf("1.1.0")
	cases := []struct {
		name  string
		env   map[string]string
		stdin string
		ret   error
	}{
		{"ADD", add, good, nil},
		{"ADD with the verb's CNI error", add, good, types.NewError(types.ErrTryAgainLater, "busy", "later")},
		{"ADD with a plain error", add, good, errors.New("boom")},
		{"ADD with CNI_NETNS_OVERRIDE", withEnv(add, "CNI_NETNS_OVERRIDE", "true"), good, nil},
		{"ADD without netns and path", withEnv(add, "CNI_NETNS", "", "CNI_PATH", ""), good, nil},
		{"ADD without container ID", withEnv(add, "CNI_CONTAINERID", ""), good, nil},
		{"container ID with a space", withEnv(add, "CNI_CONTAINERID", "a b"), good, nil},
		{"container ID starting with a dash", withEnv(add, "CNI_CONTAINERID", "-ab"), good, nil},
		{"container ID with dots and dashes", withEnv(add, "CNI_CONTAINERID", "a.b_c-d"), good, nil},
		{"ifname too long", withEnv(add, "CNI_IFNAME", "abcdefghijklmnop"), good, nil},
		{"ifname of 15 bytes", withEnv(add, "CNI_IFNAME", "abcdefghijklmno"), good, nil},
		{"ifname dot", withEnv(add, "CNI_IFNAME", "."), good, nil},
		{"ifname dot dot", withEnv(add, "CNI_IFNAME", ".."), good, nil},
		{"ifname with a slash", withEnv(add, "CNI_IFNAME", "a/b"), good, nil},
		{"ifname with a colon", withEnv(add, "CNI_IFNAME", "a:b"), good, nil},
		{"ifname with a tab", withEnv(add, "CNI_IFNAME", "a\tb"), good, nil},
		{"ifname with a no-break space", withEnv(add, "CNI_IFNAME", "a\u00a0b"), good, nil},
		{"ifname in UTF-8", withEnv(add, "CNI_IFNAME", "eté"), good, nil},
		{"ifname with a control character", withEnv(add, "CNI_IFNAME", "a\x01b"), good, nil},
		{"DEL without netns", withEnv(add, "CNI_COMMAND", "DEL", "CNI_NETNS", ""), good, nil},
		{"DEL without ifname", withEnv(add, "CNI_COMMAND", "DEL", "CNI_IFNAME", ""), good, nil},
		{"CHECK", withEnv(add, "CNI_COMMAND", "CHECK"), good, nil},
		{"CHECK at 0.3.1", withEnv(add, "CNI_COMMAND", "CHECK"), conf("0.3.1"), nil},
		{"CHECK at 0.4.0", withEnv(add, "CNI_COMMAND", "CHECK"), conf("0.4.0"), nil},
		{"CHECK at 9.9.9", withEnv(add, "CNI_COMMAND", "CHECK"), conf("9.9.9"), nil},
		{"CHECK at abc", withEnv(add, "CNI_COMMAND", "CHECK"), conf("abc"), nil},
		{"GC", map[string]string{"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}, good, nil},
		{"GC at 1.0.0", map[string]string{"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}, conf("1.0.0"), nil},
		{"GC without path", map[string]string{"CNI_COMMAND": "GC"}, good, nil},
		{"STATUS", map[string]string{"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}, good, nil},
		{"STATUS at 0.4.0", map[string]string{"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}, conf("0.4.0"), nil},
		{"ADD at 0.3.0", add, conf("0.3.0"), nil},
		{"ADD at 9.9.9", add, conf("9.9.9"), nil},
		{"ADD at abc", add, conf("abc"), nil},
		{"ADD without cniVersion", add, `{"name":"net1"}`, nil},
		{"cniVersion a number", add, `{"cniVersion":1.0,"name":"net1"}`, nil},
		{"without a name", add, `{"cniVersion":"1.1.0"}`, nil},
		{"name with a space", add, `{"cniVersion":"1.1.0","name":"net 1"}`, nil},
		{"name a number", add, `{"cniVersion":"1.1.0","name":7}`, nil},
		{"not JSON", add, `{"cniVersion":`, nil},
		{"empty stdin", add, ``, nil},
		{"unknown command", withEnv(add, "CNI_COMMAND", "FOO"), good, nil},
		{"unknown command, bad configuration", withEnv(add, "CNI_COMMAND", "FOO"), `nope`, nil},
		{"VERSION", map[string]string{"CNI_COMMAND": "VERSION"}, `ignored`, nil},
		{"no command", map[string]string{}, good, nil},
		{"no command but a container ID", map[string]string{"CNI_CONTAINERID": "c1"}, good, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := runSkel(t, c.env, c.stdin, c.ret)
			got := runOurs(c.env, c.stdin, c.ret)
			gotErr, wantErr := got.err, want.err
			got.err, want.err = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got  %+v\n want %+v", got, want)
			}
			switch {
			case gotErr == nil || wantErr == nil:
				if gotErr != wantErr {
					t.Errorf("error %+v, want %+v", gotErr, wantErr)
				}
			case gotErr.Code != wantErr.Code:
				t.Errorf("error code %d (%+v), want %d (%+v)", gotErr.Code, gotErr, wantErr.Code, wantErr)
			case renamed[wantErr.Msg] != "":
				// The same decision, told with the variable and its value.
				if want := renamed[wantErr.Msg]; !strings.Contains(gotErr.Msg, want) {
					t.Errorf("error %q does not name %s", gotErr.Msg, want)
				}
				if value := named(c.env, c.stdin, wantErr.Msg); !strings.Contains(gotErr.Msg, value) {
					t.Errorf("error %q does not name the value %s", gotErr.Msg, value)
				}
			case !reflect.DeepEqual(gotErr, wantErr):
				t.Errorf("error %+v, want %+v", gotErr, wantErr)
			}
		})
	}
}

// renamed maps skel's messages that do not name the value to the variable
// or field that pluginmain's message for the same refusal names.
var renamed = map[string]string{
	"invalid characters in containerID":                       "CNI_CONTAINERID",
	"interface name is too long":                              "CNI_IFNAME",
	"interface name is . or ..":                               "CNI_IFNAME",
	"interface name contains / or : or whitespace characters": "CNI_IFNAME",
	"missing network name":                                    `"name"`,
	"invalid characters found in network name":                "network name",
}

// named is the value a renamed message must quote.
func named(env map[string]string, stdin, msg string) string {
	switch renamed[msg] {
	case "CNI_CONTAINERID":
		return strconv.Quote(env["CNI_CONTAINERID"])
	case "CNI_IFNAME":
		return strconv.Quote(env["CNI_IFNAME"])
	case "network name":
		var c struct{ Name string }
		_ = json.Unmarshal([]byte(stdin), &c)
		return strconv.Quote(c.Name)
	}
	return ""
}

// TestIfNameAsKernel: CNI_IFNAME is checked byte by byte as the kernel
// checks a name (dev_valid_name), where skel checks Unicode white space:
// the two disagree only on names the kernel decides otherwise.
func TestIfNameAsKernel(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"abcdefghijklmno", true},
		{"abcdefghijklmnop", false},
		{"net", true}, // NEL: white space to Unicode, bytes c2 85 to the kernel
		{"à", false},   // bytes c3 a0: 0xa0 is white space to the kernel
		{"a b", false},
		{"ab", true}, // a control character the kernel accepts
		{"ab", false},
		{"a:b", false},
		{"/", false},
		{"..", false},
		{"", false},
	} {
		err := validateIfName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("validateIfName(%q) = %v, want ok %v", c.name, err, c.ok)
		}
		if err != nil && err.Code != types.ErrInvalidEnvironmentVariables {
			t.Errorf("validateIfName(%q): code %d, want %d", c.name, err.Code, types.ErrInvalidEnvironmentVariables)
		}
		if err != nil && c.name != "" && !strings.Contains(err.Msg, strconv.Quote(c.name)) {
			t.Errorf("validateIfName(%q): %q does not name the value", c.name, err.Msg)
		}
	}
}

// TestOwnNetns: ADD and DEL for the plugin's own namespace are refused
// before the verb runs (skel runs the verb first), with skel's code and a
// message naming the path, and CNI_NETNS_OVERRIDE lets them through.
func TestOwnNetns(t *testing.T) {
	for _, cmd := range []string{"ADD", "DEL"} {
		env := map[string]string{
			"CNI_COMMAND": cmd, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net",
			"CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
		}
		stdin := `{"cniVersion":"1.1.0","name":"net1"}`
		want := runSkel(t, env, stdin, nil)
		if want.err == nil || want.err.Code != types.ErrInvalidNetNS {
			t.Fatalf("%s: skel returned %v, want code %d", cmd, want.err, types.ErrInvalidNetNS)
		}
		got := runOurs(env, stdin, nil)
		if got.called != "" {
			t.Errorf("%s: the verb ran for the plugin's own namespace", cmd)
		}
		if got.err == nil || got.err.Code != want.err.Code || !strings.Contains(got.err.Msg, `CNI_NETNS "/proc/self/ns/net"`) {
			t.Errorf("%s: error %+v, want code %d naming CNI_NETNS and its value", cmd, got.err, want.err.Code)
		}
		got = runOurs(withEnv(env, "CNI_NETNS_OVERRIDE", "1"), stdin, nil)
		if got.err != nil || got.called != cmd {
			t.Errorf("%s with CNI_NETNS_OVERRIDE=1: error %v, called %q", cmd, got.err, got.called)
		}
	}
}

// TestPluginsLinkNoRegexp keeps the point of the package: no plugin
// binary links cni's skel, or anything else that compiles a regular
// expression as the plugin starts.
func TestPluginsLinkNoRegexp(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command")
	}
	for _, pkg := range []string{"plugins/main/ipvlan", "plugins/ipam/host-local", "plugins/ipam/cluster-ipam", "plugins/ipam/dhcp"} {
		cmd := exec.Command("go", "list", "-deps", "github.com/ipvlan-cni/ipvlan-cni/"+pkg)
		cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "regexp" || dep == "github.com/containernetworking/cni/pkg/skel" {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
