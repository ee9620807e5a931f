package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

// Mode is the ipvlan mode: how the kernel treats the virtual device's
// traffic (ip link add ... type ipvlan mode l2|l3|l3s).
type Mode string

// The ipvlan modes.
const (
	ModeL2  Mode = "l2"  // answers ARP, netfilter only in the container
	ModeL3  Mode = "l3"  // no ARP, no broadcast; egress through host netfilter
	ModeL3S Mode = "l3s" // like l3, ingress through host netfilter too
)

// Flag is the ipvlan flag: how slaves on one master reach each other
// (ip link add ... type ipvlan mode l2 bridge|private|vepa).
type Flag string

// The ipvlan flags.
const (
	FlagBridge  Flag = "bridge"  // slaves talk directly inside the kernel
	FlagPrivate Flag = "private" // slaves cannot talk to each other
	FlagVEPA    Flag = "vepa"    // slave-to-slave traffic goes out the master
)

// MinMTU is the smallest MTU accepted: IPv4's minimum.
const MinMTU = 68

// NetConf is the ipvlan network configuration as the runtime passes it.
type NetConf struct {
	types.PluginConf
	Master          string `json:"master,omitempty"`
	Mode            Mode   `json:"mode,omitempty"`
	Flag            Flag   `json:"flag,omitempty"`
	MTU             int    `json:"mtu,omitempty"`
	LinkInContainer bool   `json:"linkInContainer,omitempty"`
	// KeepIPv6 leaves IPv6 on when the interface gets IPv4 addresses only;
	// by default ADD turns it off there (see planSysctls).
	KeepIPv6 bool `json:"keepIPv6,omitempty"`
	// IPAMExec runs the host-local binary from CNI_PATH instead of the
	// bundled host-local in this process.
	IPAMExec bool `json:"ipamExec,omitempty"`
	// HostAccess lets the host namespace and the container reach each
	// other through the master (see hostaccess_linux.go).
	HostAccess bool `json:"hostAccess,omitempty"`
	// RawVLAN is vlan as written: decoded by validate into VLAN, so that a
	// value that is no integer (10.5, "10") is an invalid configuration
	// (code 7) naming the value, not a decoding failure.
	RawVLAN json.RawMessage `json:"vlan,omitempty"`
	// VLAN is the 802.1Q VLAN ID whose sub-interface of the master is the
	// ipvlan link's parent, 0 for none (see vlan_linux.go).
	VLAN int `json:"-"`
}

// prev is the previous plugin's result in the current result format, or
// nil when the plugin is not chained.
func (n *NetConf) prev() *current.Result {
	if n.PrevResult == nil {
		return nil
	}
	r, _ := n.PrevResult.(*current.Result) // converted by parseConfig
	return r
}

// masterFromPrevResult picks the interface to enslave when master is
// omitted and a prevResult is present. Our own interface (ifname in netns)
// is left out: on CHECK the prevResult is this plugin's own result. Of the
// rest it takes the only one, or the only one outside any sandbox. found is
// false when nothing but our own interface is there: ADD then took the
// default route's interface, and so does CHECK.
func masterFromPrevResult(prev *current.Result, ifname, netns string) (name string, found bool, err error) {
	var others, host []string
	for _, i := range prev.Interfaces {
		if i.Name == "" || (i.Name == ifname && i.Sandbox == netns) {
			continue
		}
		others = append(others, i.Name)
		if i.Sandbox == "" {
			host = append(host, i.Name)
		}
	}
	switch {
	case len(others) == 1:
		return others[0], true, nil
	case len(host) == 1:
		return host[0], true, nil
	case len(others) == 0 && len(prev.Interfaces) > 0:
		return "", false, nil
	}
	return "", false, invalidConfig("master is omitted and prevResult has %d interfaces (%d outside a sandbox): set master", len(others), len(host))
}

// plainName reports whether s is what an IPAM plugin's type must look
// like, a file name in CNI_PATH and never a path: ^[A-Za-z0-9_][A-Za-z0-9._-]*$.
// A loop, not a regexp: a package-level regexp is compiled at every start.
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// parseConfig decodes and validates the configuration given on stdin. The
// checks here need no kernel; those that need one (master, MTU ceiling)
// happen when the verb runs.
func parseConfig(stdin []byte) (*NetConf, error) {
	n := &NetConf{}
	if err := json.Unmarshal(stdin, n); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network configuration: %v", err), "")
	}
	if n.RawPrevResult != nil {
		if err := version.ParsePrevResult(&n.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
		}
		prev, err := current.NewResultFromResult(n.PrevResult)
		if err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: convert to %s: %v", current.ImplementedSpecVersion, err), "")
		}
		n.PrevResult = prev
	}
	if err := n.validate(); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *NetConf) validate() error {
	switch n.Mode {
	case "":
		n.Mode = ModeL2
	case ModeL2, ModeL3, ModeL3S:
	default:
		return invalidConfig("invalid mode %q: want l2, l3 or l3s", n.Mode)
	}
	switch n.Flag {
	case "":
		n.Flag = FlagBridge
	case FlagBridge, FlagPrivate, FlagVEPA:
	default:
		return invalidConfig("invalid flag %q: want bridge, private or vepa", n.Flag)
	}
	if n.MTU != 0 && (n.MTU < MinMTU || n.MTU > 65535) {
		return invalidConfig("invalid mtu %d: want %d to the master's MTU", n.MTU, MinMTU)
	}
	if n.Master != "" {
		if err := validateLinkName(n.Master); err != nil {
			return invalidConfig("invalid master %q: %v", n.Master, err)
		}
	}
	if n.IPAM.Type != "" && !plainName(n.IPAM.Type) {
		return invalidConfig("invalid ipam type %q: want the plain name of a plugin in CNI_PATH", n.IPAM.Type)
	}
	if err := n.validateVLAN(); err != nil {
		return err
	}
	return n.validateHostAccess()
}

// MaxVLAN is the largest 802.1Q VLAN ID (4095 is reserved).
const MaxVLAN = 4094

// validateVLAN decodes vlan: absent or null for none, else an integer
// literal from 1 to MaxVLAN. JSON numbers like 10.5 or 1e1 and strings
// like "10" are refused, not rounded or converted.
func (n *NetConf) validateVLAN() error {
	raw := string(n.RawVLAN)
	if raw == "" || raw == "null" {
		return nil
	}
	vid, err := strconv.Atoi(raw)
	if err != nil || vid < 1 || vid > MaxVLAN {
		return invalidConfig("invalid vlan %s: want an integer from 1 to %d", raw, MaxVLAN)
	}
	if n.LinkInContainer {
		return invalidConfig("vlan %d with linkInContainer: the plugin makes and removes VLAN sub-interfaces in the host namespace only; create the VLAN interface in the container's namespace and name it as master", vid)
	}
	n.VLAN = vid
	return nil
}

// validateHostAccess refuses the combinations in which hostAccess cannot
// work. The host's side is an ipvlan slave of the same master, in the host
// namespace (the shim): with linkInContainer the master is in the
// container's namespace, and the kernel applies one flag to all slaves of
// a master: private drops traffic between slaves, vepa sends it out of the
// master to the switch, so only bridge lets the shim and the container
// talk.
func (n *NetConf) validateHostAccess() error {
	if !n.HostAccess {
		return nil
	}
	if n.LinkInContainer {
		return invalidConfig("hostAccess with linkInContainer: the master is in the container's namespace, so the host namespace has no link to it for the host-side interface")
	}
	if n.Flag != FlagBridge {
		return invalidConfig("hostAccess with flag %q: the host reaches containers through another ipvlan link of the master, and only flag bridge lets a master's ipvlan links reach each other", n.Flag)
	}
	return nil
}

// requireAddressSource checks that ADD has addresses to configure: from
// IPAM, or from the previous plugin when chained.
func (n *NetConf) requireAddressSource() error {
	if n.IPAM.Type == "" && n.prev() == nil {
		return invalidConfig("ipam is required unless the plugin is chained after one that returns a prevResult")
	}
	return nil
}

// validateLinkName applies the kernel's rule for interface names
// (pluginmain.IfNameProblem), and refuses control characters as well.
func validateLinkName(name string) error {
	if p := pluginmain.IfNameProblem(name); p != "" {
		return errors.New(p)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("contains %q", r)
		}
	}
	return nil
}

// validateIfName checks CNI_IFNAME (error code 4: an invalid environment).
func validateIfName(name string) *types.Error {
	if name == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME is empty", "")
	}
	if err := validateLinkName(name); err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("invalid CNI_IFNAME %q: %v", name, err), "")
	}
	return nil
}

func invalidConfig(format string, args ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, args...), "")
}

// ErrCheckFailed is the plugin-specific code of a CHECK that found the
// container's interface differing from the configuration or prevResult.
const ErrCheckFailed uint = 100

func checkFailed(format string, args ...any) *types.Error {
	return types.NewError(ErrCheckFailed, fmt.Sprintf(format, args...), "")
}
