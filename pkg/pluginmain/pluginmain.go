// Package pluginmain is the entry point of the project's CNI plugins: it
// reads the CNI_* environment variables and the configuration on stdin,
// checks them and the configuration's cniVersion as the CNI specification
// asks, and runs the verb. It takes the decisions cni's skel package takes,
// with the same error codes (a test runs both on the same inputs), and
// differs in three ways:
//
//   - it needs no regular expression: cni's skel validates names through
//     cni/pkg/utils, which compiles its expressions, and the unicode
//     tables they need, as every plugin process starts (0.5 to 3 ms a
//     verb in the project's VM, see docs/performance.md);
//   - an invalid container ID, interface name or network name gets a
//     message naming the variable or field, the value and the rule;
//   - ADD and DEL refuse a CNI_NETNS that is the plugin's own namespace
//     before the verb runs; skel checks it after the verb has run.
package pluginmain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"
)

// CmdArgs are the arguments of one invocation, as skel.CmdArgs.
type CmdArgs struct {
	ContainerID   string // CNI_CONTAINERID
	Netns         string // CNI_NETNS
	IfName        string // CNI_IFNAME
	Args          string // CNI_ARGS
	Path          string // CNI_PATH
	NetnsOverride string // CNI_NETNS_OVERRIDE: "1" or "true" lets CNI_NETNS be the plugin's own
	StdinData     []byte // the network configuration
}

// Funcs are a plugin's verbs; a nil verb succeeds without doing anything.
type Funcs struct {
	Add, Del, Check, GC, Status func(*CmdArgs) error
}

// env is one CNI_* variable and the commands that require it.
type env struct {
	name     string
	required map[string]bool
	validate func(string) *types.Error // when required and set
}

var (
	verbs = map[string]bool{"ADD": true, "CHECK": true, "DEL": true, "GC": true, "STATUS": true}
	// The order is skel's, which its message of missing variables keeps.
	envs = []env{
		{"CNI_COMMAND", verbs, nil},
		{"CNI_CONTAINERID", map[string]bool{"ADD": true, "CHECK": true, "DEL": true}, validateContainerID},
		{"CNI_NETNS", map[string]bool{"ADD": true, "CHECK": true}, nil},
		{"CNI_IFNAME", map[string]bool{"ADD": true, "CHECK": true, "DEL": true}, validateIfName},
		{"CNI_ARGS", nil, nil},
		{"CNI_PATH", verbs, nil},
		{"CNI_NETNS_OVERRIDE", nil, nil},
	}
	// minVersion is the first specification version with the verb.
	minVersion = map[string]string{"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
)

// Main runs the verb of CNI_COMMAND and exits: status 0, or the error
// printed on stdout as the specification's error object and status 1.
// about is printed, with the versions, when CNI_COMMAND is unset.
func Main(funcs Funcs, info version.PluginInfo, about string) {
	Exit(Run(funcs, info, about, os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// Exit ends the plugin: status 0 for a nil err, else err printed on
// stdout as the specification's error object and status 1.
func Exit(err *types.Error) {
	if err == nil {
		os.Exit(0)
	}
	if perr := err.Print(); perr != nil {
		fmt.Fprintln(os.Stderr, "print the error:", perr)
	}
	os.Exit(1)
}

// Run is Main without the exit: it returns the error to print, if any.
func Run(funcs Funcs, info version.PluginInfo, about string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *types.Error {
	cmd := getenv("CNI_COMMAND")
	args, err := fromEnv(cmd, getenv, stdin)
	if err != nil {
		if err.Code == types.ErrInvalidEnvironmentVariables && cmd == "" && about != "" {
			fmt.Fprintln(stderr, about)
			fmt.Fprintf(stderr, "CNI protocol versions supported: %s\n", strings.Join(info.SupportedVersions(), ", "))
			return nil
		}
		return err
	}
	if cmd != "VERSION" {
		if err := checkName(args.StdinData); err != nil {
			return err
		}
	}
	var verb func(*CmdArgs) error
	switch cmd {
	case "VERSION":
		if err := info.Encode(stdout); err != nil {
			return types.NewError(types.ErrIOFailure, err.Error(), "")
		}
		return nil
	case "ADD":
		verb = funcs.Add
	case "DEL":
		verb = funcs.Del
	case "CHECK":
		verb = funcs.Check
	case "GC":
		verb = funcs.GC
	case "STATUS":
		verb = funcs.Status
	default:
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("unknown CNI_COMMAND: %v", cmd), "")
	}
	if err := checkVersion(cmd, args.StdinData, info); err != nil {
		return err
	}
	if cmd == "ADD" || cmd == "DEL" {
		if err := CheckNetns(args.Netns, args.NetnsOverride); err != nil {
			return err
		}
	}
	if verb == nil {
		return nil
	}
	if err := verb(args); err != nil {
		var te *types.Error
		if errors.As(err, &te) {
			return te
		}
		return types.NewError(types.ErrInternal, err.Error(), "")
	}
	return nil
}

// fromEnv reads the arguments of cmd: the environment, each variable cmd
// requires present and valid, and stdin (none for VERSION).
func fromEnv(cmd string, getenv func(string) string, stdin io.Reader) (*CmdArgs, *types.Error) {
	vals := make(map[string]string, len(envs))
	var missing []string
	for _, e := range envs {
		v := getenv(e.name)
		vals[e.name] = v
		switch {
		case v == "" && (e.required[cmd] || e.name == "CNI_COMMAND"):
			missing = append(missing, e.name)
		case v != "" && e.required[cmd] && e.validate != nil:
			if err := e.validate(v); err != nil {
				return nil, err
			}
		}
	}
	if len(missing) > 0 {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("required env variables [%s] missing", strings.Join(missing, ",")), "")
	}
	args := &CmdArgs{
		ContainerID:   vals["CNI_CONTAINERID"],
		Netns:         vals["CNI_NETNS"],
		IfName:        vals["CNI_IFNAME"],
		Args:          vals["CNI_ARGS"],
		Path:          vals["CNI_PATH"],
		NetnsOverride: vals["CNI_NETNS_OVERRIDE"],
	}
	if cmd == "VERSION" {
		return args, nil
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("error reading from stdin: %v", err), "")
	}
	args.StdinData = data
	return args, nil
}

// checkName checks the configuration's name, as every verb but VERSION
// needs one.
func checkName(data []byte) *types.Error {
	var conf struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("error unmarshall network config: %v", err), "")
	}
	if conf.Name == "" {
		return types.NewError(types.ErrInvalidNetworkConfig, `the network configuration has no "name"`, "")
	}
	if !ValidName(conf.Name) {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("invalid network name %q: %s", conf.Name, nameRule), "")
	}
	return nil
}

// checkVersion checks the configuration's cniVersion against the plugin's
// versions and against the first version that has the verb. It decodes
// the configuration a second time, with cni's version decoder, so that a
// cniVersion of the wrong type is refused with cni's message.
func checkVersion(cmd string, data []byte, info version.PluginInfo) *types.Error {
	var d version.ConfigDecoder
	v, err := d.Decode(data)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	if min, ok := minVersion[cmd]; ok {
		atLeast, err := version.GreaterThanOrEqualTo(v, min)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, err.Error(), "")
		}
		if !atLeast {
			return types.NewError(types.ErrIncompatibleCNIVersion, "config version does not allow "+cmd, "")
		}
		if err := pluginAllows(cmd, v, info); err != nil {
			return err
		}
	}
	var r version.Reconciler
	if verr := r.Check(v, info); verr != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "incompatible CNI versions", verr.Details())
	}
	return nil
}

// pluginAllows reports whether one of the plugin's versions is v or later.
func pluginAllows(cmd, v string, info version.PluginInfo) *types.Error {
	for _, pv := range info.SupportedVersions() {
		ok, err := version.GreaterThanOrEqualTo(pv, v)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, err.Error(), "")
		}
		if ok {
			return nil
		}
	}
	return types.NewError(types.ErrIncompatibleCNIVersion, "plugin version does not allow "+cmd, "")
}

// CheckNetns refuses a CNI_NETNS that is the plugin's own network
// namespace, unless CNI_NETNS_OVERRIDE ("1" or "true") allows it. A path
// that cannot be opened is left to the verb: DEL succeeds for a namespace
// that is gone.
func CheckNetns(netns, override string) *types.Error {
	if o := strings.ToUpper(override); o == "TRUE" || o == "1" || netns == "" {
		return nil
	}
	var theirs, ours unix.Stat_t
	if unix.Stat(netns, &theirs) != nil {
		return nil
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("identify the plugin's own network namespace: %v", err), "")
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q is the plugin's own network namespace (CNI_NETNS_OVERRIDE=1 allows it)", netns), "")
	}
	return nil
}

// nameRule says what ValidName accepts.
const nameRule = "want letters, digits, '_', '.' and '-', beginning with a letter or digit"

// ValidName reports whether s, a container ID or a network name, is made
// of what the specification allows: ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$.
func ValidName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

func validateContainerID(id string) *types.Error {
	if !ValidName(id) {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("invalid CNI_CONTAINERID %q: %s", id, nameRule), "")
	}
	return nil
}

// maxIfNameLen is the kernel's limit on an interface name (IFNAMSIZ-1).
const maxIfNameLen = 15

// IfNameProblem says what the kernel finds wrong with name as an
// interface name (dev_valid_name), or "" when nothing is: empty, longer
// than 15 bytes, . or .., or holding '/', ':' or a byte the kernel counts
// as white space (tab to carriage return, space, and 0xa0).
func IfNameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > maxIfNameLen:
		return fmt.Sprintf("longer than %d bytes", maxIfNameLen)
	case name == "." || name == "..":
		return "not an interface name"
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '/', ':', '\t', '\n', '\v', '\f', '\r', ' ', 0xa0:
			return fmt.Sprintf("contains %q", rune(c))
		}
	}
	return ""
}

// validateIfName checks CNI_IFNAME as the kernel checks an interface name.
func validateIfName(name string) *types.Error {
	if name == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME is empty", "")
	}
	if p := IfNameProblem(name); p != "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("invalid CNI_IFNAME %q: %s", name, p), "")
	}
	return nil
}
