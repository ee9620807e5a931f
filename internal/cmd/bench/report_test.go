package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFinishTargets(t *testing.T) {
	d := func(p50 float64) Dist { return Dist{N: 100, P50: p50, P99: 2 * p50} }
	r := &Report{
		Fill:  2000,
		Floor: d(32),
		Ours: ImplReport{
			Idle:       Verbs{Add: d(40), Check: d(50), Del: d(30)},
			Namespaces: Verbs{Add: d(48), Check: d(50), Del: d(33)},
			Attached:   Verbs{Add: d(44), Check: d(70), Del: d(30)},
		},
		Reference: ImplReport{
			Idle:       Verbs{Add: d(100), Check: d(100), Del: d(100)},
			Namespaces: Verbs{Add: d(120), Check: d(100), Del: d(100)},
		},
	}
	r.Features = &Features{
		Plain:      Verbs{Add: d(40), Check: d(30), Del: d(20)},
		HostAccess: Verbs{Add: d(44), Check: d(30), Del: d(24)},
		VLAN:       Verbs{Add: d(40), Check: d(30), Del: d(21)},
	}
	r.finish()
	want := []Target{
		{Name: "ADD p50 ours/reference", Value: 0.4, Limit: 0.3, Met: false},
		{Name: "CHECK p50 ours/reference", Value: 0.5, Limit: 0.4, Met: false},
		{Name: "DEL p50 ours/reference", Value: 0.3, Limit: 0.4, Met: true},
		{Name: "ADD p50 ours/floor", Value: 1.25, Limit: 1.5, Met: true},
		{Name: "ADD p50 ours, 2000 attached/none", Value: 1.1, Limit: 1.2, Met: true},
		{Name: "CHECK p50 ours, 2000 attached/none", Value: 1.4, Limit: 1.2, Met: false},
		{Name: "DEL p50 ours, 2000 attached/none", Value: 1, Limit: 1.2, Met: true},
		{Name: "ADD p50 hostAccess/plain", Value: 1.1, Limit: 1.15, Met: true},
		{Name: "DEL p50 hostAccess/plain", Value: 1.2, Limit: 1.15, Met: false},
		{Name: "ADD p50 vlan/plain", Value: 1, Limit: 1.15, Met: true},
		{Name: "DEL p50 vlan/plain", Value: 1.05, Limit: 1.15, Met: true},
	}
	if diff := cmp.Diff(want, r.Targets); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	if got := r.RatioP50["attached_add"]; got != 0 {
		t.Errorf("ratio of an unmeasured reference = %v, want 0", got)
	}
	if got := r.RatioP50["namespaces_add"]; got != 0.4 {
		t.Errorf("ratio of ADD beside the empty namespaces = %v, want 0.4", got)
	}
	var buf bytes.Buffer
	if err := r.print(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"the namespaces alone, ours 2000 empty netns/none: ADD 1.20×, CHECK 1.00×, DEL 1.10×",
		"the namespaces alone, reference 2000 empty netns/none: ADD 1.20×",
		"features: ours plain, with hostAccess and with vlan",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, buf.String())
		}
	}
}

// A run that fails early still prints a table and one parseable JSON line.
func TestPrintEmpty(t *testing.T) {
	r := &Report{}
	r.finish()
	var buf bytes.Buffer
	if err := r.print(&buf); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if js, ok := strings.CutPrefix(l, "bench-json: "); ok {
			lines = append(lines, js)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("got %d bench-json lines, want 1:\n%s", len(lines), buf.String())
	}
	var back Report
	if err := json.Unmarshal([]byte(lines[0]), &back); err != nil {
		t.Fatalf("bench-json does not parse: %v", err)
	}
	for _, tg := range back.Targets {
		if tg.Met {
			t.Errorf("target %q met with nothing measured", tg.Name)
		}
	}
}
