package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/client"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

// Options configure a Daemon.
type Options struct {
	// Store keeps the leases.
	Store *leases.Store
	// Logf logs one line.
	Logf func(format string, args ...any)
	// RenewAt, when above 0, renews each lease at that fraction of its
	// lease time instead of at the server's T1 (option 58): a shorter
	// schedule for servers whose shortest lease is long (dnsmasq's is two
	// minutes).
	RenewAt float64
	// RequestTimeout bounds each renewal's exchange; 0 means 10 s.
	RequestTimeout time.Duration
	// HostPrefix is prepended to the namespace paths of requests: where
	// the host's root is in a daemon run in a container.
	HostPrefix string
}

// Daemon holds the leases. Serve answers the plugin; Resume takes up the
// leases found on disk.
type Daemon struct {
	opt Options

	mu sync.Mutex
	// claims maps an address to the attachment that holds it or is
	// requesting it, so two attachments never request the same address.
	claims map[netip.Addr]leases.Key
	// keepers are the goroutines that renew leases, by attachment.
	keepers map[leases.Key]*keeper
	// muxes share one packet socket per master among its exchanges.
	muxes map[string]*client.Mux
	// wg counts the keepers, for Close.
	wg sync.WaitGroup
}

type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a daemon with no leases held.
func New(opt Options) *Daemon {
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	if opt.RequestTimeout <= 0 {
		opt.RequestTimeout = 10 * time.Second
	}
	return &Daemon{opt: opt, claims: map[netip.Addr]leases.Key{}, keepers: map[leases.Key]*keeper{}, muxes: map[string]*client.Mux{}}
}

// Listen opens the unix socket at path (its directory created, a stale
// socket replaced, mode 0600).
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: another daemon answers there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// Serve answers requests on l until ctx ends or l fails.
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.serveConn(ctx, conn)
		}()
	}
}

func (d *Daemon) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	var req Request
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		_ = json.NewEncoder(conn).Encode(Response{Error: types.NewError(types.ErrDecodingFailure, "decode request", err.Error())})
		return
	}
	lease, err := d.Handle(ctx, &req)
	resp := Response{Lease: lease}
	if err != nil {
		var te *types.Error
		if !errors.As(err, &te) {
			te = types.NewError(types.ErrInternal, err.Error(), "")
		}
		resp.Error = te
	}
	if werr := json.NewEncoder(conn).Encode(resp); werr != nil && req.Verb == VerbAdd && err == nil {
		// The plugin is gone (killed, timed out): the runtime takes the
		// ADD as failed, so no lease may outlive it.
		d.opt.Logf("%s: the plugin left before the answer (%v): releasing %s", req.Key, werr, lease.Address)
		_ = d.del(context.WithoutCancel(ctx), req.Key)
	}
}

// Handle carries out one request.
func (d *Daemon) Handle(ctx context.Context, req *Request) (*client.Lease, error) {
	if req.Netns != "" && d.opt.HostPrefix != "" {
		req.Netns = filepath.Join(d.opt.HostPrefix, req.Netns)
	}
	switch req.Verb {
	case VerbAdd:
		return d.add(ctx, req)
	case VerbDel:
		return nil, d.del(ctx, req.Key)
	case VerbCheck:
		return d.check(req)
	case VerbGC:
		return nil, d.gc(ctx, req)
	case VerbStatus:
		return nil, nil
	}
	return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("unknown verb %q", req.Verb), "")
}

// claims are one attachment's view of the daemon's claims (client.Claims).
type claims struct {
	d   *Daemon
	key leases.Key
}

// Claim records that key holds or requests addr, unless another
// attachment does; an attachment claims one address at a time.
func (c claims) Claim(addr netip.Addr) bool {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if k, ok := c.d.claims[addr]; ok && k != c.key {
		return false
	}
	c.d.claimLocked(c.key, addr)
	return true
}

// Hint claims the first address of subnet after after that no attachment
// claims (neither the network nor the broadcast address).
func (c claims) Hint(after netip.Addr, subnet netip.Prefix) netip.Addr {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	for a := after.Next(); subnet.Contains(a) && subnet.Contains(a.Next()); a = a.Next() {
		if _, ok := c.d.claims[a]; !ok {
			c.d.claimLocked(c.key, a)
			return a
		}
	}
	return netip.Addr{}
}

func (d *Daemon) claimLocked(key leases.Key, addr netip.Addr) {
	for a, k := range d.claims {
		if k == key {
			delete(d.claims, a)
		}
	}
	d.claims[addr] = key
}

func (d *Daemon) unclaim(key leases.Key) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, k := range d.claims {
		if k == key {
			delete(d.claims, a)
		}
	}
}

func (d *Daemon) add(ctx context.Context, req *Request) (_ *client.Lease, err error) {
	if rec, err := d.opt.Store.Get(req.Key); err == nil && !rec.Released && time.Now().Before(rec.Lease.Expiry()) {
		// A repeated ADD of a live attachment: the same lease.
		return &rec.Lease, nil
	}
	d.stopKeeper(req.Key)
	master, err := resolveMaster(req.Master)
	if err != nil {
		return nil, err
	}
	rec := &leases.Record{Key: req.Key, Attachment: req.Attachment}
	rec.Master = master
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.transport(master)
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("lease for %s: %v", req.Key.IfName, err), "")
	}
	defer conn.Close()
	defer func() {
		if err != nil {
			d.unclaim(req.Key)
		}
	}()
	lease, err := client.Acquire(actx, conn, rec.Identity(), claims{d, req.Key})
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("no lease for %s: searched for a DHCP server on %s for %s: %v", req.Key.IfName, master, timeout, err), "")
	}
	rec.Lease = *lease
	if err := d.opt.Store.Put(rec); err != nil {
		_ = client.Release(conn, rec.Identity(), lease)
		return nil, err
	}
	d.opt.Logf("%s: leased %s from %s on %s for %s", req.Key, lease.Address, lease.Server, master, lease.Duration)
	d.startKeeper(rec)
	return lease, nil
}

func (d *Daemon) del(ctx context.Context, key leases.Key) error {
	d.stopKeeper(key)
	rec, err := d.opt.Store.Get(key)
	if errors.Is(err, leases.ErrNotFound) {
		return nil
	}
	if err != nil {
		// An unreadable record can only be forgotten.
		d.opt.Logf("%s: %v: forgetting it", key, err)
		return d.opt.Store.Delete(key)
	}
	if err := d.release(rec); err != nil {
		// DEL succeeds for the container; the release is retried.
		d.opt.Logf("%s: %v: will retry", key, err)
		rec.Released = true
		if err := d.opt.Store.Put(rec); err != nil {
			return err
		}
		d.startKeeper(rec)
		return nil
	}
	return nil
}

// release sends the DHCPRELEASE and forgets the lease.
func (d *Daemon) release(rec *leases.Record) error {
	conn, err := d.transport(rec.Master)
	if err != nil {
		return fmt.Errorf("release %s: %w", rec.Lease.Address, err)
	}
	defer conn.Close()
	if err := client.Release(conn, rec.Identity(), &rec.Lease); err != nil {
		return err
	}
	d.opt.Logf("%s: released %s to %s", rec.Key, rec.Lease.Address, rec.Lease.Server)
	return d.forget(rec.Key)
}

func (d *Daemon) forget(key leases.Key) error {
	d.unclaim(key)
	return d.opt.Store.Delete(key)
}

func (d *Daemon) check(req *Request) (*client.Lease, error) {
	rec, err := d.opt.Store.Get(req.Key)
	if err != nil {
		return nil, fmt.Errorf("attachment %s has no lease: %w", req.Key, err)
	}
	if rec.Released || !time.Now().Before(rec.Lease.Expiry()) {
		return nil, fmt.Errorf("lease %s of %s expired at %s", rec.Lease.Address, req.Key, rec.Lease.Expiry().Format(time.RFC3339))
	}
	if req.Netns != "" {
		if err := holdsAddress(req.Netns, req.Key.IfName, rec.Lease.Address); err != nil {
			return nil, err
		}
	}
	return &rec.Lease, nil
}

func (d *Daemon) gc(ctx context.Context, req *Request) error {
	recs, err := d.opt.Store.List()
	if err != nil {
		d.opt.Logf("gc: %v", err)
	}
	var errs []error
	for _, r := range recs {
		if r.Key.Network != req.Key.Network || slices.Contains(req.Valid, r.Key) {
			continue
		}
		d.opt.Logf("gc: %s is not a valid attachment", r.Key)
		errs = append(errs, d.del(ctx, r.Key))
	}
	return errors.Join(errs...)
}

// Resume takes up the leases on disk: each live one whose namespace still
// exists is renewed on its schedule, the others are released.
func (d *Daemon) Resume(ctx context.Context) error {
	recs, err := d.opt.Store.List()
	for _, r := range recs {
		d.mu.Lock()
		d.claims[r.Lease.Address.Addr()] = r.Key
		d.mu.Unlock()
		d.opt.Logf("%s: resuming lease %s (expires %s)", r.Key, r.Lease.Address, r.Lease.Expiry().Format(time.RFC3339))
		d.startKeeper(r)
	}
	return err
}

// Close stops renewing (the leases stay on disk for the next start).
func (d *Daemon) Close() {
	d.mu.Lock()
	for _, k := range d.keepers {
		k.cancel()
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, m := range d.muxes {
		m.Close()
		delete(d.muxes, name)
	}
}

// transport returns a Transport for one exchange on master, through the
// master's Mux, opened on first use and again when its socket is gone
// (the master deleted or down).
func (d *Daemon) transport(master string) (*client.MuxTransport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.muxes[master]; ok {
		select {
		case <-m.Done():
			m.Close()
			delete(d.muxes, master)
		default:
			return m.Transport(), nil
		}
	}
	c, err := client.Open(master)
	if err != nil {
		return nil, err
	}
	m := client.NewMux(c)
	d.muxes[master] = m
	return m.Transport(), nil
}

func (d *Daemon) startKeeper(rec *leases.Record) {
	ctx, cancel := context.WithCancel(context.Background())
	k := &keeper{cancel: cancel, done: make(chan struct{})}
	d.mu.Lock()
	d.keepers[rec.Key] = k
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		defer close(k.done)
		d.keep(ctx, rec)
		d.mu.Lock()
		if d.keepers[rec.Key] == k {
			delete(d.keepers, rec.Key)
		}
		d.mu.Unlock()
	}()
}

func (d *Daemon) stopKeeper(key leases.Key) {
	d.mu.Lock()
	k := d.keepers[key]
	delete(d.keepers, key)
	d.mu.Unlock()
	if k != nil {
		k.cancel()
		<-k.done
	}
}

// renewAt is when rec's lease is next due for renewal.
func (d *Daemon) renewAt(l *client.Lease) time.Time {
	if d.opt.RenewAt > 0 {
		return l.Bound.Add(time.Duration(d.opt.RenewAt * float64(l.Duration)))
	}
	return l.Bound.Add(l.T1)
}

// keep renews rec's lease until ctx ends, the lease is refused or expires
// (the address is then taken off the container's interface), or the
// container's namespace is gone (the lease is then released). A record
// marked Released is released again until that succeeds.
func (d *Daemon) keep(ctx context.Context, rec *leases.Record) {
	next := d.renewAt(&rec.Lease)
	if rec.Released || !namespaceExists(rec.Netns) {
		// Released while the server was out of reach, or (on Resume) the
		// container went while the daemon was down: at once.
		next = time.Now()
	}
	for {
		if err := sleepUntil(ctx, next); err != nil {
			return
		}
		now := time.Now()
		if rec.Released || !namespaceExists(rec.Netns) {
			if !rec.Released {
				d.opt.Logf("%s: namespace %s is gone: releasing %s", rec.Key, rec.Netns, rec.Lease.Address)
			}
			if err := d.release(rec); err == nil {
				return
			} else if !now.Before(rec.Lease.Expiry()) {
				d.opt.Logf("%s: %v; the lease expired: forgetting it", rec.Key, err)
				_ = d.forget(rec.Key)
				return
			} else {
				d.opt.Logf("%s: %v", rec.Key, err)
			}
			next = retryAt(now, rec.Lease.Expiry())
			continue
		}
		if !now.Before(rec.Lease.Expiry()) {
			d.opt.Logf("%s: lease %s expired at %s: taking it off %s", rec.Key, rec.Lease.Address, rec.Lease.Expiry().Format(time.RFC3339), rec.Key.IfName)
			d.drop(rec)
			return
		}
		lease, err := d.renew(ctx, rec)
		var nak *client.NAKError
		switch {
		case errors.As(err, &nak):
			d.opt.Logf("%s: %v: taking %s off %s", rec.Key, err, rec.Lease.Address, rec.Key.IfName)
			d.drop(rec)
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			d.opt.Logf("%s: %v", rec.Key, err)
			next = retryAt(now, rec.Lease.Expiry())
			continue
		}
		if lease.Address != rec.Lease.Address {
			d.opt.Logf("%s: the server renewed with %s instead of %s: taking %s off %s", rec.Key, lease.Address, rec.Lease.Address, rec.Lease.Address, rec.Key.IfName)
			d.drop(rec)
			return
		}
		rec.Lease = *lease
		if err := d.opt.Store.Put(rec); err != nil {
			d.opt.Logf("%s: %v", rec.Key, err)
		}
		d.opt.Logf("%s: renewed %s until %s", rec.Key, lease.Address, lease.Expiry().Format(time.RFC3339))
		next = d.renewAt(lease)
	}
}

func (d *Daemon) renew(ctx context.Context, rec *leases.Record) (*client.Lease, error) {
	conn, err := d.transport(rec.Master)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", rec.Lease.Address, err)
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, d.opt.RequestTimeout)
	defer cancel()
	return client.Renew(rctx, conn, rec.Identity(), &rec.Lease)
}

// drop takes a lease that is no longer the attachment's off the
// container's interface and forgets it.
func (d *Daemon) drop(rec *leases.Record) {
	if err := removeAddress(rec.Netns, rec.Key.IfName, rec.Lease.Address); err != nil {
		d.opt.Logf("%s: %v", rec.Key, err)
	}
	if err := d.forget(rec.Key); err != nil {
		d.opt.Logf("%s: %v", rec.Key, err)
	}
}

// retryAt is halfway from now to the expiry, at least a second away (RFC
// 2131 4.4.5 halves the remaining time down to 60 s; leases here may be
// shorter).
func retryAt(now, expiry time.Time) time.Time {
	return now.Add(max(expiry.Sub(now)/2, time.Second))
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}
