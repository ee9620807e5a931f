package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/daemon"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

// NetConf is the whole network configuration: an IPAM plugin is given
// its caller's, so the ipvlan plugin's "master" and "mode" are read here.
type NetConf struct {
	types.NetConf
	Master string      `json:"master"`
	Mode   string      `json:"mode"`
	IPAM   *IPAMConfig `json:"ipam"`
}

// IPAMConfig is the "ipam" section. daemonSocketPath, request and provide
// are the reference dhcp plugin's fields.
type IPAMConfig struct {
	Type             string          `json:"type"`
	DaemonSocketPath string          `json:"daemonSocketPath"`
	Request          []RequestOption `json:"request"`
	Provide          []ProvideOption `json:"provide"`
	// Timeout bounds ADD's search for a server, a Go duration ("10s").
	Timeout string `json:"timeout"`
	// Broadcast sets the broadcast flag in every request; default true,
	// which a shared MAC (ipvlan) needs.
	Broadcast *bool `json:"broadcast"`
}

// RequestOption asks the server for an option (in option 55).
// SkipDefault drops the default list.
type RequestOption struct {
	SkipDefault bool   `json:"skipDefault"`
	Option      string `json:"option"`
}

// ProvideOption sends an option to the server: Value as is, or the value
// of the CNI_ARGS key FromArg (the option is left out when it is absent).
type ProvideOption struct {
	Option  string `json:"option"`
	Value   string `json:"value"`
	FromArg string `json:"fromArg"`
}

// Option codes (RFC 2132) and the names dhcp-options(5) gives them.
var optionNames = map[string]uint8{
	"subnet-mask": 1, "router": 3, "routers": 3, "domain-name-servers": 6,
	"host-name": 12, "domain-name": 15, "broadcast-address": 28,
	"ntp-servers": 42, "dhcp-lease-time": 51, "dhcp-renewal-time": 58,
	"dhcp-rebinding-time": 59, "vendor-class-identifier": 60,
	"dhcp-client-identifier": 61, "user-class": 77, "domain-search": 119,
	"classless-static-route": 121, "classless-static-routes": 121,
}

// Codes the plugin sets itself, never from "provide".
var reservedOptions = []uint8{0, 50, 51, 53, 54, 55, 57, 255}

// defaultRequest is asked for unless a request option says skipDefault.
var defaultRequest = []uint8{1, 3, 6, 15, 51, 58, 59, 121}

const defaultTimeout = 10 * time.Second

func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

func parseOption(field, s string) (uint8, error) {
	if c, ok := optionNames[strings.ToLower(s)]; ok {
		return c, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 254 {
		return 0, invalid("invalid %s option %q: want a name of dhcp-options(5) this plugin knows or a code from 1 to 254", field, s)
	}
	return uint8(n), nil
}

// Plan is what a verb sends the daemon, and where.
type Plan struct {
	SocketPath string
	Timeout    time.Duration
	Conf       *NetConf
	Req        daemon.Request
}

// parseConfig decodes and checks the configuration of an attachment and
// builds its request; cniArgs is CNI_ARGS.
func parseConfig(stdin []byte, containerID, ifName, netns, cniArgs string) (*Plan, error) {
	var conf NetConf
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network configuration: %v", err), "")
	}
	if conf.IPAM == nil {
		return nil, invalid("missing ipam section")
	}
	ic := conf.IPAM
	p := &Plan{SocketPath: daemon.DefaultSocketPath, Timeout: defaultTimeout, Conf: &conf}
	if ic.DaemonSocketPath != "" {
		if !filepath.IsAbs(ic.DaemonSocketPath) {
			return nil, invalid("invalid ipam daemonSocketPath %q: want an absolute path", ic.DaemonSocketPath)
		}
		p.SocketPath = ic.DaemonSocketPath
	}
	if ic.Timeout != "" {
		d, err := time.ParseDuration(ic.Timeout)
		if err != nil || d <= 0 {
			return nil, invalid("invalid ipam timeout %q: want a positive Go duration such as \"10s\"", ic.Timeout)
		}
		p.Timeout = d
	}
	switch conf.Mode {
	case "", "l2", "l3", "l3s":
	default:
		return nil, invalid("invalid mode %q: want l2, l3 or l3s", conf.Mode)
	}
	if netns != "" {
		abs, err := filepath.Abs(netns)
		if err != nil {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %q: %v", netns, err), "")
		}
		netns = abs
	}

	req := daemon.Request{
		Key: leases.Key{Network: conf.Name, ContainerID: containerID, IfName: ifName},
		Attachment: leases.Attachment{
			Netns:     netns,
			Master:    conf.Master,
			Mode:      conf.Mode,
			Broadcast: ic.Broadcast == nil || *ic.Broadcast,
		},
		Timeout: p.Timeout,
	}
	var extra []uint8
	skipDefault := false
	for _, r := range ic.Request {
		c, err := parseOption("request", r.Option)
		if r.Option == "" && r.SkipDefault {
			skipDefault = true
			continue
		}
		if err != nil {
			return nil, err
		}
		skipDefault = skipDefault || r.SkipDefault
		extra = append(extra, c)
	}
	if !skipDefault {
		req.Request = append(req.Request, defaultRequest...)
	}
	for _, c := range extra {
		if !slices.Contains(req.Request, c) {
			req.Request = append(req.Request, c)
		}
	}

	args := parseArgs(cniArgs)
	for _, o := range ic.Provide {
		c, err := parseOption("provide", o.Option)
		if err != nil {
			return nil, err
		}
		if slices.Contains(reservedOptions, c) {
			return nil, invalid("invalid provide option %q: the plugin sets option %d itself", o.Option, c)
		}
		if (o.Value == "") == (o.FromArg == "") {
			return nil, invalid("invalid provide option %q: want exactly one of value and fromArg", o.Option)
		}
		v := o.Value
		if o.FromArg != "" {
			var ok bool
			if v, ok = args[o.FromArg]; !ok || v == "" {
				continue
			}
		}
		if len(v) > 255 {
			return nil, invalid("invalid provide option %q: value of %d bytes, at most 255 fit", o.Option, len(v))
		}
		if c == 61 {
			req.ClientID = []byte(v)
			continue
		}
		if req.Provide == nil {
			req.Provide = map[uint8][]byte{}
		}
		req.Provide[c] = []byte(v)
	}
	if req.ClientID == nil {
		req.ClientID = ClientID(req.Key)
	}
	p.Req = req
	return p, nil
}

// parseArgs splits CNI_ARGS ("K1=V1;K2=V2").
func parseArgs(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			m[k] = v
		}
	}
	return m
}

// ClientID is the attachment's client identifier (option 61) in the form
// of RFC 4361: type 255, a 4-byte IAID, and a DUID-UUID (RFC 6355) made
// from the network name, container ID and interface name, so it is unique
// to the attachment and the same on every call.
func ClientID(k leases.Key) []byte {
	h := sha256.Sum256([]byte("ipvlan-cni dhcp\x00" + k.Network + "\x00" + k.ContainerID + "\x00" + k.IfName))
	id := make([]byte, 0, 1+4+2+16)
	id = append(id, 255)
	id = append(id, h[16:20]...) // IAID
	id = append(id, 0x00, 0x04)  // DUID-UUID
	id = append(id, h[:16]...)
	return id
}
