//go:build linux

package main

import (
	"fmt"
	"hash/fnv"
	"testing"
)

func TestVLANName(t *testing.T) {
	for _, tc := range []struct {
		master string
		vid    int
		want   string
	}{
		{"eth0", 10, "eth0.10"},
		{"enp0s31f6", 4094, "enp0s31f6.4094"},
		{"enp0s31f6x", 4094, "enp0s31f6x.4094"}, // 15 characters
		{"enp0s31f6xy", 4094, "v" + fnvHex("enp0s31f6xy") + ".4094"},
	} {
		got := vlanName(tc.master, tc.vid)
		if got != tc.want || len(got) > 15 {
			t.Errorf("vlanName(%q, %d) = %q, want %q (at most 15 characters)", tc.master, tc.vid, got, tc.want)
		}
	}
}

func fnvHex(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}
