package etcdstore

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/etcdtest"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
)

// refusingMember answers every gRPC request as etcd does when it fails
// one with an error it has no gRPC code for: Unknown, with the error's
// text. It counts the requests.
func refusingMember(t *testing.T, message string) (endpoint string, requests *atomic.Int32) {
	t.Helper()
	requests = new(atomic.Int32)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "2")
			w.Header().Set("Grpc-Message", url.PathEscape(message))
			w.WriteHeader(http.StatusOK)
		}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String(), requests
}

// TestMemberRefusals: a write refused by a member that is stopping ("raft:
// stopped") or changing leader ("raft proposal dropped") goes to the next
// member (every write does nothing the second time, should the refusing
// member's raft have taken it after all); any other Unknown answer is the
// request's own failure and goes nowhere else. Read back from etcd.
func TestMemberRefusals(t *testing.T) {
	etcdtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := etcdtest.Start(ctx, t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ip := netip.MustParseAddr("10.0.0.5")
	block := netip.MustParsePrefix("10.0.0.0/26")

	for _, tc := range []struct {
		message string
		retried bool
	}{
		{"raft: stopped", true},
		{"raft proposal dropped", true},
		{"etcdserver: some other failure", false},
	} {
		t.Run(tc.message, func(t *testing.T) {
			refusing, requests := refusingMember(t, tc.message)
			s := New(Config{Endpoints: append([]string{refusing}, c.Endpoints()...), DialTimeout: 5 * time.Second, Prefix: "/refusals/", Network: tc.message})
			defer s.Close()
			s.c.first = 0 // the refusing member first

			owner := store.Attachment{ContainerID: "x", IfName: "eth0"}
			i, err := s.Commit(ctx, "a", owner, time.Now(), []store.Attempt{{{IP: ip, Claim: block}}})
			if requests.Load() != 1 {
				t.Errorf("the refusing member got %d requests, want 1", requests.Load())
			}
			s.c.first = 1 // read back from the real member
			held, herr := s.Held(ctx, "a", owner)
			if herr != nil {
				t.Fatal(herr)
			}
			if tc.retried {
				if err != nil || i != 0 {
					t.Fatalf("Commit after %q: attempt %d, %v; want the next member to write attempt 0", tc.message, i, err)
				}
				if len(held) != 1 || held[0] != ip {
					t.Errorf("etcd holds %v for the attachment, want [%s]", held, ip)
				}
				return
			}
			var se *statusError
			if err == nil || !errors.As(err, &se) || se.Code != 2 || se.Message != tc.message {
				t.Fatalf("Commit after %q: %d, %v; want that answer as the error", tc.message, i, err)
			}
			if len(held) != 0 {
				t.Errorf("etcd holds %v for the attachment, want nothing: the request must not go to another member", held)
			}
		})
	}
}
