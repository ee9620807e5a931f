// Package daemon is the DHCP daemon (`dhcp daemon`): it holds the leases
// of every attachment on the node, speaks DHCP for them on the ipvlan
// master in the daemon's own (host) network namespace, renews them, and
// answers the plugin over a unix socket.
//
// The daemon needs CAP_NET_RAW and CAP_NET_ADMIN in the host namespace
// (a packet socket on the master), CAP_SYS_ADMIN to enter containers'
// namespaces (to take an expired address off an interface), and its lease
// directory (package leases).
//
// The protocol is one JSON Request and one JSON Response per connection.
package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/client"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

// DefaultSocketPath is where the daemon listens unless told otherwise.
const DefaultSocketPath = "/run/cni/dhcp.sock"

// Verbs of the protocol: the CNI verbs the plugin forwards.
const (
	VerbAdd    = "ADD"
	VerbDel    = "DEL"
	VerbCheck  = "CHECK"
	VerbGC     = "GC"
	VerbStatus = "STATUS"
)

// Request is what the plugin asks of the daemon.
type Request struct {
	Verb string     `json:"verb"`
	Key  leases.Key `json:"key"`
	// Attachment says where to speak for the attachment and how: Master
	// "" is the interface of the daemon's default route.
	leases.Attachment
	// Timeout bounds an ADD's exchange with the server.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Valid lists, for GC, the attachments of Key.Network to keep.
	Valid []leases.Key `json:"valid,omitempty"`
}

// Response is the daemon's answer: a lease (ADD, CHECK) or an error.
type Response struct {
	Lease *client.Lease `json:"lease,omitempty"`
	Error *types.Error  `json:"error,omitempty"`
}

// Call sends req to the daemon listening on socketPath and returns its
// answer. An error is the daemon's *types.Error, or one saying the daemon
// could not be reached.
func Call(ctx context.Context, socketPath string, req *Request) (*client.Lease, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, &Unreachable{SocketPath: socketPath, Err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, &Unreachable{SocketPath: socketPath, Err: err}
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read the answer of the dhcp daemon on %s: %w", socketPath, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return resp.Lease, nil
}

// Unreachable says the daemon's socket did not answer.
type Unreachable struct {
	SocketPath string
	Err        error
}

func (e *Unreachable) Error() string {
	return fmt.Sprintf("dhcp daemon not reachable on %s (is `dhcp daemon` running?): %v", e.SocketPath, e.Err)
}

func (e *Unreachable) Unwrap() error { return e.Err }
