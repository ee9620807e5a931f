package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

// state is what a network holds in etcd, read back key by key.
type state struct {
	// ips maps an allocated address to "node/containerID/ifname".
	ips map[netip.Addr]string
	// blocks maps a claimed block to its node.
	blocks map[netip.Prefix]string
}

// readState parses the keys of network under prefix and fails the test
// on any half-written record: an address key without its owner key or
// the reverse, a block without its node index or the reverse, or an
// unknown key.
func readState(t *testing.T, kv map[string]string, prefix, network string) state {
	t.Helper()
	base := prefix + network + "/"
	s := state{ips: map[netip.Addr]string{}, blocks: map[netip.Prefix]string{}}
	owners := map[string]bool{}
	nodeBlocks := map[string]bool{}
	for k, v := range kv {
		rest, ok := strings.CutPrefix(k, base)
		if !ok {
			continue
		}
		kind, name, _ := strings.Cut(rest, "/")
		switch kind {
		case "ips":
			a := parseAddrKey(t, name)
			var iv struct {
				ContainerID string `json:"containerID"`
				IfName      string `json:"ifname"`
				Node        string `json:"node"`
			}
			if err := json.Unmarshal([]byte(v), &iv); err != nil || iv.Node == "" || iv.ContainerID == "" || iv.IfName == "" {
				t.Errorf("address key %s has value %q", k, v)
			}
			s.ips[a] = iv.Node + "/" + iv.ContainerID + "/" + iv.IfName
		case "owners":
			owners[name] = true
		case "blocks":
			p, err := netip.ParsePrefix(name)
			if err != nil {
				t.Errorf("block key %s: %v", k, err)
			}
			var bv struct {
				Node string `json:"node"`
			}
			if err := json.Unmarshal([]byte(v), &bv); err != nil || bv.Node == "" {
				t.Errorf("block key %s has value %q", k, v)
			}
			s.blocks[p] = bv.Node
		case "nodes":
			nodeBlocks[name] = true
		default:
			t.Errorf("unknown key %s", k)
		}
	}
	for a, o := range s.ips {
		if !owners[o+"/"+a.String()] {
			t.Errorf("address %s of %s has no owner key", a, o)
		}
		delete(owners, o+"/"+a.String())
	}
	for o := range owners {
		t.Errorf("owner key %s has no address key", o)
	}
	for p, node := range s.blocks {
		if !nodeBlocks[node+"/blocks/"+p.String()] {
			t.Errorf("block %s of %s has no node key", p, node)
		}
		delete(nodeBlocks, node+"/blocks/"+p.String())
	}
	for nb := range nodeBlocks {
		t.Errorf("node key %s has no block key", nb)
	}
	return s
}

func parseAddrKey(t *testing.T, s string) netip.Addr {
	t.Helper()
	if strings.Contains(s, ":") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Errorf("address key %q: %v", s, err)
		}
		return a
	}
	var b [4]byte
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		t.Errorf("address key %q is not four octets", s)
		return netip.Addr{}
	}
	for i, p := range parts {
		n := 0
		for _, ch := range p {
			n = n*10 + int(ch-'0')
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b)
}

// blockOf returns the block of s holding a, or false.
func (s state) blockOf(a netip.Addr) (netip.Prefix, string, bool) {
	for p, node := range s.blocks {
		if p.Contains(a) {
			return p, node, true
		}
	}
	return netip.Prefix{}, "", false
}
