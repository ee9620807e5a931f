package hostlocal

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzParseConfig checks that any input yields either a config that keeps
// the parser's promises or a CNI error with a spec code, never a panic.
// Seeds live in testdata/fuzz/FuzzParseConfig.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(conf(`{"subnet":"10.1.0.0/24"}`)), "")
	f.Fuzz(func(t *testing.T, stdin []byte, envArgs string) {
		c, err := ParseConfig(stdin, envArgs)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *types.Error", err, err)
			}
			if e.Code != types.ErrInvalidEnvironmentVariables && e.Code != types.ErrDecodingFailure && e.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("error code %d (%q), want 4, 6 or 7", e.Code, e.Msg)
			}
			if e.Msg == "" {
				t.Fatal("error without a message")
			}
			return
		}
		if len(c.RangeSets) == 0 || c.DataDir == "" || c.Name == "" {
			t.Fatalf("accepted config lacks ranges, dataDir or name: %+v", c)
		}
		var all []string
		for i, s := range c.RangeSets {
			if len(s) == 0 {
				t.Fatalf("range set %d is empty", i)
			}
			for _, r := range s {
				if r.Subnet != r.Subnet.Masked() || !r.Subnet.Contains(r.RangeStart) || !r.Subnet.Contains(r.RangeEnd) ||
					r.RangeStart.Compare(r.RangeEnd) > 0 || r.Gateway.Is4() != r.RangeStart.Is4() ||
					r.RangeStart.Is4() != s[0].RangeStart.Is4() {
					t.Fatalf("accepted invalid range %+v in set %d", r, i)
				}
				for j, o := range c.RangeSets {
					for _, q := range o {
						if (j != i || q != r) && r.Overlaps(q) {
							t.Fatalf("accepted overlapping ranges %s and %s", r, q)
						}
					}
				}
				all = append(all, r.String())
			}
		}
		req, err := c.RequestedBySet()
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("RequestedBySet error %v, want code 7", err)
			}
			return
		}
		for i, a := range req {
			r, ok := c.RangeSets[i].RangeFor(a)
			if !ok || !r.Usable(a) {
				t.Fatalf("requested %s mapped to set %d where it is not usable", a, i)
			}
		}
	})
}
