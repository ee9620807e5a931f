package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
)

// client calls etcd's v3 KV service (Range, Txn) over gRPC's wire
// protocol: HTTP/2 (h2c with prior knowledge on http:// endpoints, ALPN on
// https://), each request and answer one length-prefixed protobuf
// message (proto.go), the outcome in the grpc-status trailer. A plugin
// process makes a handful of requests and exits, so it needs none of a
// gRPC library: etcd's Go client costs several milliseconds of package
// initialisation per process, more than the requests, and the members'
// JSON gateway (/v3/kv/... over HTTP/1.1) costs them three to four times
// the CPU of the same request in gRPC.
type client struct {
	endpoints []string
	http      *http.Client
	first     int // endpoint tried first; spreads processes over members
}

// minRequest is the least time one member is given.
const minRequest = 300 * time.Millisecond

func newClient(endpoints []string, tc *tls.Config, dialTimeout time.Duration) *client {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: dialTimeout,
		Protocols:           &protocols,
	}
	return &client{
		endpoints: endpoints,
		http:      &http.Client{Transport: tr},
		first:     os.Getpid() % len(endpoints),
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// statusError is a gRPC status other than OK that a member answered.
type statusError struct {
	Code    int
	Message string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s (grpc code %d)", e.Message, e.Code)
}

// retryable reports whether a member's answer says another member, or
// the same one later, may succeed: gRPC's Canceled (the member is
// shutting down: "the client connection is closing"), DeadlineExceeded
// and Unavailable (no leader, leader changed, request timed out), and
// the errors of raft that etcd passes on as Unknown with raft's own text:
// a member that is stopping refuses a write ("raft: stopped"), and one
// whose leader is changing drops it ("raft proposal dropped").
func (e *statusError) retryable() bool {
	switch e.Code {
	case 1, 4, 14:
		return true
	case 2:
		return e.Message == "raft: stopped" || e.Message == "raft proposal dropped"
	}
	return false
}

// call sends the request message req to method (/etcdserverpb.KV/...)
// and passes the answer's message to decode. A member that does not
// answer within half the time left, or answers Unavailable, makes it try
// the next: a member whose leader just died holds a write until its own
// timeout (seconds), longer than a verb may wait, while a busy one
// answers late but answers; when none answers the error wraps
// store.ErrUnavailable. A write may so be sent twice: every write of this
// package is written to do nothing the second time.
func (c *client) call(ctx context.Context, method string, req []byte, decode func([]byte) error) error {
	frame := make([]byte, 5, 5+len(req)) // uncompressed, then the length
	binary.BigEndian.PutUint32(frame[1:], uint32(len(req)))
	frame = append(frame, req...)
	var errs []error
	for i := range c.endpoints {
		ep := c.endpoints[(c.first+i)%len(c.endpoints)]
		budget := minRequest
		if dl, ok := ctx.Deadline(); ok {
			budget = max(time.Until(dl)/2, minRequest)
		}
		if i == len(c.endpoints)-1 {
			budget = time.Hour // the last member gets all that is left
		}
		rctx, cancel := context.WithTimeout(ctx, budget)
		answer, err := c.post(rctx, ep+method, frame)
		cancel()
		if err == nil {
			// Stay on a member that answers.
			c.first = (c.first + i) % len(c.endpoints)
			return decode(answer)
		}
		var se *statusError
		if errors.As(err, &se) && !se.retryable() {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(append([]error{store.ErrUnavailable}, errs...)...)
}

// post sends one gRPC request and returns the answer's message.
func (c *client) post(ctx context.Context, u string, frame []byte) ([]byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(frame))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("Te", "trailers")
	res, err := c.http.Do(r)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		// Not a gRPC server's answer: a proxy's, or a member starting.
		return nil, fmt.Errorf("http status %s: %q", res.Status, data)
	}
	// An error before any message comes as headers only ("Trailers-Only").
	status, h := res.Header.Get("Grpc-Status"), res.Header
	if status == "" {
		status, h = res.Trailer.Get("Grpc-Status"), res.Trailer
	}
	code, err := strconv.Atoi(status)
	if err != nil {
		return nil, fmt.Errorf("answer without a gRPC status: %q", status)
	}
	if code != 0 {
		msg, err := url.PathUnescape(h.Get("Grpc-Message"))
		if err != nil {
			msg = h.Get("Grpc-Message")
		}
		return nil, &statusError{Code: code, Message: msg}
	}
	if len(data) < 5 || data[0] != 0 || int(binary.BigEndian.Uint32(data[1:5])) != len(data)-5 {
		return nil, fmt.Errorf("answer is not one uncompressed gRPC message (%d bytes)", len(data))
	}
	return data[5:], nil
}

func (c *client) txn(ctx context.Context, t txnRequest) (*txnResponse, error) {
	var resp txnResponse
	if err := c.call(ctx, "/etcdserverpb.KV/Txn", t.appendTo(nil), resp.decode); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *client) get(ctx context.Context, r rangeRequest) (*rangeResponse, error) {
	var resp rangeResponse
	if err := c.call(ctx, "/etcdserverpb.KV/Range", r.appendTo(nil), resp.decode); err != nil {
		return nil, err
	}
	return &resp, nil
}
