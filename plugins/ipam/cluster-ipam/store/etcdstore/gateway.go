package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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

// client speaks etcd's v3 KV API through the JSON gateway every etcd
// member serves on its client URLs (/v3/kv/..., etcd 3.4 and later): the
// same requests and transactions as gRPC, in protobuf's JSON mapping
// (bytes in base64, 64-bit integers as strings). A plugin process makes a
// handful of requests and exits, and a gRPC client's start (its package
// initialisation, HTTP/2 setup) costs several times what the requests
// do; plain HTTP/1.1 keeps a verb's cost near host-local's.
type client struct {
	endpoints []string
	http      *http.Client
	first     int // endpoint tried first; spreads processes over members
}

// minRequest is the least time one member is given.
const minRequest = 300 * time.Millisecond

func newClient(endpoints []string, tc *tls.Config, dialTimeout time.Duration) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: dialTimeout,
		MaxIdleConnsPerHost: 4,
		ForceAttemptHTTP2:   false,
	}
	return &client{
		endpoints: endpoints,
		http:      &http.Client{Transport: tr},
		first:     os.Getpid() % len(endpoints),
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// gatewayError is an error the gateway answered: gRPC's code and message.
type gatewayError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Err     string `json:"error"`
}

func (e *gatewayError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Err
}

// retryable reports whether a member's answer says another member, or
// the same one later, may succeed: gRPC's Canceled (the member is
// shutting down: "the client connection is closing"), DeadlineExceeded
// and Unavailable (no leader, leader changed, request timed out).
func (e *gatewayError) retryable() bool {
	return e.Code == 1 || e.Code == 4 || e.Code == 14
}

// call posts req to path and decodes the answer into resp. A member that
// does not answer within half the time left, or answers Unavailable,
// makes it try the next: a member whose leader just died holds a write
// until its own timeout (seconds), longer than a verb may wait, while a
// busy one answers late but answers; when none answers the error wraps store.ErrUnavailable. A
// write may so be sent twice: every write of this package is written to
// do nothing the second time.
func (c *client) call(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
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
		err := c.post(rctx, ep+path, body, resp)
		cancel()
		if err == nil {
			// Stay on a member that answers.
			c.first = (c.first + i) % len(c.endpoints)
			return nil
		}
		var ge *gatewayError
		if errors.As(err, &ge) && !ge.retryable() {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(append([]error{store.ErrUnavailable}, errs...)...)
}

func (c *client) post(ctx context.Context, u string, body []byte, resp any) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(r)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		ge := &gatewayError{}
		if json.Unmarshal(data, ge) != nil || (ge.Message == "" && ge.Err == "") {
			// Not the gateway's answer: a proxy's, or a member starting.
			return fmt.Errorf("http status %s: %q", res.Status, data)
		}
		return ge
	}
	return json.Unmarshal(data, resp)
}

// i64 is a protobuf int64 in JSON: a string, or a number.
type i64 int64

func (v i64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(v), 10) + `"`), nil
}

func (v *i64) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	n, err := strconv.ParseInt(s, 10, 64)
	*v = i64(n)
	return err
}

type keyValue struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision i64    `json:"create_revision"`
	ModRevision    i64    `json:"mod_revision"`
}

type rangeRequest struct {
	Key          []byte `json:"key"`
	RangeEnd     []byte `json:"range_end,omitempty"`
	KeysOnly     bool   `json:"keys_only,omitempty"`
	CountOnly    bool   `json:"count_only,omitempty"`
	Serializable bool   `json:"serializable,omitempty"`
}

type rangeResponse struct {
	Kvs   []keyValue `json:"kvs"`
	Count i64        `json:"count"`
}

type putRequest struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

type deleteRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
}

// op is a RequestOp: exactly one field set.
type op struct {
	Range  *rangeRequest  `json:"request_range,omitempty"`
	Put    *putRequest    `json:"request_put,omitempty"`
	Delete *deleteRequest `json:"request_delete_range,omitempty"`
	Txn    *txnRequest    `json:"request_txn,omitempty"`
}

// compare is a Compare: Target names which of the values is compared.
type compare struct {
	Result         string `json:"result"` // EQUAL, GREATER, LESS, NOT_EQUAL
	Target         string `json:"target"` // CREATE, MOD, VALUE
	Key            []byte `json:"key"`
	RangeEnd       []byte `json:"range_end,omitempty"`
	CreateRevision *i64   `json:"create_revision,omitempty"`
	ModRevision    *i64   `json:"mod_revision,omitempty"`
	Value          []byte `json:"value,omitempty"`
}

type txnRequest struct {
	Compare []compare `json:"compare,omitempty"`
	Success []op      `json:"success,omitempty"`
	Failure []op      `json:"failure,omitempty"`
}

type opResponse struct {
	Range *rangeResponse `json:"response_range"`
	Txn   *txnResponse   `json:"response_txn"`
}

type txnResponse struct {
	Succeeded bool         `json:"succeeded"`
	Responses []opResponse `json:"responses"`
}

// prefixEnd returns the end of the key range of every key with prefix p.
func prefixEnd(p string) []byte {
	end := []byte(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func getPrefix(p string, keysOnly, serializable bool) op {
	return op{Range: &rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), KeysOnly: keysOnly, Serializable: serializable}}
}

func put(k, v string) op { return op{Put: &putRequest{Key: []byte(k), Value: []byte(v)}} }

func del(k string) op { return op{Delete: &deleteRequest{Key: []byte(k)}} }

func delPrefix(p string) op {
	return op{Delete: &deleteRequest{Key: []byte(p), RangeEnd: prefixEnd(p)}}
}

func rev(n int64) *i64 { v := i64(n); return &v }

// absent holds while key does not exist.
func absent(k string) compare {
	return compare{Result: "EQUAL", Target: "CREATE", Key: []byte(k), CreateRevision: rev(0)}
}

// present holds while key exists.
func present(k string) compare {
	return compare{Result: "GREATER", Target: "CREATE", Key: []byte(k), CreateRevision: rev(0)}
}

// noneUnder holds while no key starts with p: a compare over a range
// holds when every key in it does, and when there is none.
func noneUnder(p string) compare {
	c := absent(p)
	c.RangeEnd = prefixEnd(p)
	return c
}

func valueIs(k, v string) compare {
	return compare{Result: "EQUAL", Target: "VALUE", Key: []byte(k), Value: []byte(v)}
}

func modIs(k string, r int64) compare {
	return compare{Result: "EQUAL", Target: "MOD", Key: []byte(k), ModRevision: rev(r)}
}

func (c *client) txn(ctx context.Context, t txnRequest) (*txnResponse, error) {
	var resp txnResponse
	if err := c.call(ctx, "/v3/kv/txn", t, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *client) get(ctx context.Context, r rangeRequest) (*rangeResponse, error) {
	var resp rangeResponse
	if err := c.call(ctx, "/v3/kv/range", r, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
