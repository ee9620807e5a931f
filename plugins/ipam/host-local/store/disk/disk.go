// Package disk is the on-disk store of the host-local IPAM plugin. Leases are
// kept in the reference host-local plugin's format, so either implementation
// reads, releases and allocates around the other's leases. An index of
// their owners finds an attachment's leases without reading every lease
// file.
//
// Layout of <dataDir>/<network>/, as the reference plugin keeps it:
//
//	lock                  flock(2) lock file, shared with the reference plugin
//	<ip>                  one lease; content "<containerID>\r\n<ifname>"
//	last_reserved_ip.<N>  last address reserved from range set N
//
// and of the index, <dataDir>/.host-local-index/<network>/, outside the
// directory the reference plugin walks and reads file by file:
//
//	<owner>  index entry: a symbolic link naming the addresses leased to
//	         one attachment
//	stamp    the network directory's mtime the index matches
//
// A lease takes one inode and its owner's index entry another (a symbolic
// link without a data block), so the store uses two inodes for an
// attachment with one address, where the reference uses one.
//
// Invariants, all kept under the lock:
//
//   - A lease's content is first written to a temp file in the network
//     directory; then its owner's index entry is replaced (symlink + rename)
//     to list the address; then the temp file is hard-linked to the lease
//     name, which fails if the name exists, so a lease appears whole or not
//     at all. An entry is rewritten or removed only after its lease is
//     removed. So a lease always has an entry. An entry may name an address
//     whose lease is gone or belongs to someone else; entries are verified
//     against the lease files on every use. A file system without hard
//     links cannot hold the store.
//   - After changing the directory, Unlock sets the directory's mtime one
//     nanosecond back and records the result in the stamp. Any later change
//     by another program stamps the directory with the current time, which
//     differs from the record even within one clock tick, so the index is
//     reconciled with the lease files before its next use. A crash before
//     the stamp is written has the same effect; every step that can leave
//     the index short of the leases (the temp file above, a lease's removal)
//     changes the network directory first.
//
// Reconciling reads every lease and every entry, as the reference plugin
// reads every file on each of its verbs, and writes only the entries that
// differ. When it cannot write (a full file system), the store serves the
// rest of the locked section from what it read and leaves the index alone:
// DEL and CHECK need no free space. A name like an address that is not a
// readable lease (a directory, a file the plugin may not read) is skipped
// and reported through the store's log function.
//
// Earlier versions kept the index in <network>/.index, where the reference
// plugin read every entry on each of its verbs; reconciling removes it.
package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// DefaultDataDir is where networks are stored when the config sets no
// dataDir, as in the reference plugin.
const DefaultDataDir = "/var/lib/cni/networks"

const (
	lockName           = "lock"
	lastReservedPrefix = "last_reserved_ip."
	lineBreak          = "\r\n"
	tmpPrefix          = ".tmp-"
)

var errNotLocked = errors.New("store used without holding its lock")

// Store is the on-disk store of one network. It is not safe for concurrent
// use by goroutines; processes are serialised by its file lock.
type Store struct {
	dir   string // the network directory
	index string // the network's index directory
	lock  *fileLock
	logf  func(format string, args ...any)

	locked bool // the file lock is held
	fresh  bool // the index was verified or reconciled under the current lock
	dirty  bool // the directory changed under the current lock
	// scan, when not nil, holds every readable lease by owner, read under
	// the current lock because the index could not be trusted or
	// repaired; the index is then left alone until the next lock.
	scan     map[store.Attachment][]netip.Addr
	reported map[string]bool // names already reported as skipped

	// step, when set, is called at named points of every operation. Tests
	// use it to kill the process between two writes; it is nil otherwise.
	step func(point string)
}

var _ store.Store = (*Store)(nil)

// New opens the store of network under dataDir (DefaultDataDir when empty),
// creating its directory and lock file when missing. logf receives one line
// per lease file the store skips (nil discards them).
func New(dataDir, network string, logf func(format string, args ...any)) (*Store, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	if network == "" || network == "." || network == ".." || strings.ContainsAny(network, `/\`) {
		return nil, fmt.Errorf("network name %q cannot name a directory", network)
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create network directory: %w", err)
	}
	lk, err := openLock(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	index := filepath.Join(dataDir, indexRoot, network)
	return &Store{dir: dir, index: index, lock: lk, logf: logf, reported: map[string]bool{}}, nil
}

func (s *Store) hit(point string) {
	if s.step != nil {
		s.step(point)
	}
}

// Lock implements store.Store.
func (s *Store) Lock(ctx context.Context) error {
	if err := s.lock.lock(ctx); err != nil {
		return fmt.Errorf("lock %s: %w", s.dir, err)
	}
	s.locked, s.fresh, s.dirty, s.scan = true, false, false, nil
	return nil
}

// Unlock implements store.Store. It records the index stamp when the
// directory changed; if that fails the next user reconciles the index.
func (s *Store) Unlock() error {
	if !s.locked {
		return errNotLocked
	}
	var err error
	if s.dirty && s.fresh {
		err = s.writeStamp()
	}
	s.locked, s.fresh, s.dirty, s.scan = false, false, false, nil
	return errors.Join(err, s.lock.unlock())
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.locked = false
	return s.lock.close()
}

// ready checks the lock is held and the index may be trusted, reconciling
// it once per lock when it may not.
func (s *Store) ready() error {
	if !s.locked {
		return errNotLocked
	}
	if s.fresh || s.scan != nil {
		return nil
	}
	ok, err := s.stampMatches()
	if err != nil {
		return err
	}
	if !ok {
		return s.reconcile()
	}
	s.fresh = true
	return nil
}

func (s *Store) leasePath(ip netip.Addr) string { return filepath.Join(s.dir, ip.String()) }

// leaseContent is the reference plugin's lease file content.
func leaseContent(o store.Attachment) string {
	if o.IfName == "" {
		return o.ContainerID
	}
	return o.ContainerID + lineBreak + o.IfName
}

// parseOwner reads a lease the way the reference plugin matches it: trimmed,
// "<id>\r\n<ifname>", or only "<id>" when written by old versions. The
// bytes are kept as they are, valid UTF-8 or not.
func parseOwner(data []byte) store.Attachment {
	v := strings.TrimSpace(string(data))
	id, ifname, ok := strings.Cut(v, lineBreak)
	if !ok {
		return store.Attachment{ContainerID: v}
	}
	return store.Attachment{ContainerID: id, IfName: ifname}
}

// leaseName parses a directory entry name as a lease address; only the
// canonical spelling the plugins write counts.
func leaseName(name string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(name)
	if err != nil || ip.Zone() != "" || ip.String() != name {
		return netip.Addr{}, false
	}
	return ip, true
}

// errNotLease marks a name like an address that cannot be a lease, such as
// a directory: it stays so until the network directory changes.
var errNotLease = errors.New("not a lease file")

// owner returns who holds the lease of ip, and false when it is not leased.
// A name that is not a readable lease is an error: errNotLease for a
// directory, the read error otherwise.
func (s *Store) owner(ip netip.Addr) (store.Attachment, bool, error) {
	return parseLease(readSmall(s.leasePath(ip)))
}

// parseLease is owner for a lease file read as data, err.
func parseLease(data []byte, err error) (store.Attachment, bool, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return store.Attachment{}, false, nil
	}
	if errors.Is(err, syscall.EISDIR) {
		return store.Attachment{}, false, fmt.Errorf("%w: %w", errNotLease, err)
	}
	if err != nil {
		return store.Attachment{}, false, fmt.Errorf("read lease: %w", err)
	}
	return parseOwner(data), true, nil
}

// skip reports, once per store, a name like an address that is not a
// readable lease. The address stays out of use: its name is taken.
func (s *Store) skip(ip netip.Addr, err error) {
	if s.reported[ip.String()] {
		return
	}
	s.reported[ip.String()] = true
	s.logf("network directory %s: skipping %s, which is not a readable lease: %v", s.dir, ip, err)
}

// held returns the addresses the index lists for o whose lease files name
// o, and whether the entry also lists addresses that fail that check.
// Under a scan it returns what the scan read.
func (s *Store) held(o store.Attachment) (ips []netip.Addr, stale bool, err error) {
	if s.scan != nil {
		return slices.Clone(s.scan[o]), false, nil
	}
	listed, err := s.readEntry(o)
	if errors.Is(err, errCorruptEntry) {
		if err := s.reconcile(); err != nil {
			return nil, false, err
		}
		return s.held(o)
	}
	if err != nil {
		return nil, false, err
	}
	for _, ip := range listed {
		got, ok, err := s.owner(ip)
		switch {
		case err != nil:
			// Unknown owner: keep the address listed, it may be o's.
			s.skip(ip, err)
		case ok && got == o:
			ips = append(ips, ip)
		default:
			stale = true
		}
	}
	return ips, stale, nil
}

// Reserve implements store.Store.
func (s *Store) Reserve(o store.Attachment, ip netip.Addr, rangeID string) (bool, error) {
	if err := s.ready(); err != nil {
		return false, err
	}
	path := s.leasePath(ip)
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("stat lease: %w", err)
	}
	before, _, err := s.held(o)
	if err != nil {
		return false, err
	}
	s.dirty = true
	// The lease's content goes to a temp file first. It changes the
	// network directory, so that a crash before the lease is linked
	// leaves the index unstamped: the next user removes the temp file
	// and the entry written below.
	tmp, err := s.tempFile(s.dir, []byte(leaseContent(o)))
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	s.hit("reserve:lease-temp-written")
	// undo puts the entry back; under a scan the index is not kept.
	undo := func() error { return nil }
	if s.scan == nil {
		if err := s.writeEntry(o, append(slices.Clone(before), ip)); err != nil {
			return false, err
		}
		undo = func() error { return s.writeEntry(o, before) }
	}
	s.hit("reserve:entry-written")
	created, err := linkLease(tmp, path)
	if err != nil || !created {
		return false, errors.Join(err, undo())
	}
	s.hit("reserve:lease-created")
	last := filepath.Join(s.dir, lastReservedPrefix+rangeID)
	if err := s.writeAtomic(s.dir, last, []byte(ip.String())); err != nil {
		// Keep "a failed reservation leaves nothing": undo the lease.
		err = fmt.Errorf("record last reserved address: %w", err)
		if rerr := os.Remove(path); rerr != nil {
			return false, errors.Join(err, rerr)
		}
		return false, errors.Join(err, undo())
	}
	if s.scan != nil {
		s.scan[o] = append(s.scan[o], ip)
	}
	s.hit("reserve:done")
	return true, nil
}

// linkLease creates the lease file at path as a hard link to the temp file
// tmp, so that it appears whole or not at all, and reports false when path
// exists. A file system without hard links cannot hold the store.
func linkLease(tmp, path string) (bool, error) {
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	return false, fmt.Errorf("create lease: %w", err)
}

// LastReservedIP implements store.Store. A missing or unreadable record is
// the zero Addr, as the reference plugin then starts from the range start.
func (s *Store) LastReservedIP(rangeID string) (netip.Addr, error) {
	if err := s.ready(); err != nil {
		return netip.Addr{}, err
	}
	data, err := os.ReadFile(filepath.Join(s.dir, lastReservedPrefix+rangeID))
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read last reserved address: %w", err)
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(data)))
	if err != nil {
		return netip.Addr{}, nil
	}
	return ip.Unmap(), nil
}

// Lookup implements store.Store.
func (s *Store) Lookup(o store.Attachment) ([]netip.Addr, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	ips, _, err := s.held(o)
	return ips, err
}

// Release implements store.Store. Leases go first and the entry last, so a
// crash in between leaves only an entry naming missing leases. Removing
// files needs no free space, so neither does Release.
func (s *Store) Release(o store.Attachment) ([]netip.Addr, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	ips, stale, err := s.held(o)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		if stale {
			// Drop an entry left naming leases that are gone.
			s.dirty = true
			return nil, s.writeEntry(o, nil)
		}
		return nil, nil
	}
	s.dirty = true
	for _, ip := range ips {
		if err := os.Remove(s.leasePath(ip)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove lease: %w", err)
		}
		s.hit("release:lease-removed")
	}
	if s.scan != nil {
		delete(s.scan, o)
		return ips, nil
	}
	if err := s.writeEntry(o, nil); err != nil {
		return nil, err
	}
	return ips, nil
}

// ReleaseIP implements store.Store.
func (s *Store) ReleaseIP(ip netip.Addr, o store.Attachment) (bool, error) {
	if err := s.ready(); err != nil {
		return false, err
	}
	got, ok, err := s.owner(ip)
	if err != nil || !ok || got != o {
		return false, err
	}
	s.dirty = true
	if err := os.Remove(s.leasePath(ip)); err != nil {
		return false, fmt.Errorf("remove lease: %w", err)
	}
	s.hit("release-ip:lease-removed")
	if s.scan != nil {
		s.scan[o] = slices.DeleteFunc(s.scan[o], func(a netip.Addr) bool { return a == ip })
		return true, nil
	}
	rest, _, err := s.held(o)
	if err != nil {
		return true, err
	}
	return true, s.writeEntry(o, rest)
}

// names lists the network directory.
func (s *Store) names() ([]string, error) {
	return listNames(s.dir)
}

func listNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	return names, nil
}

// Reserved implements store.Store; it reads names only, no lease content.
func (s *Store) Reserved() ([]netip.Addr, error) {
	if !s.locked {
		return nil, errNotLocked
	}
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	for _, n := range names {
		if ip, ok := leaseName(n); ok {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, nil
}

// Leases implements store.Store; it reads every lease file and skips, and
// reports, those it cannot read.
func (s *Store) Leases() ([]store.Lease, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	ips, err := s.Reserved()
	if err != nil {
		return nil, err
	}
	out := make([]store.Lease, 0, len(ips))
	for _, ip := range ips {
		o, ok, err := s.owner(ip)
		if err != nil {
			s.skip(ip, err)
			continue
		}
		if ok {
			out = append(out, store.Lease{IP: ip, Owner: o})
		}
	}
	return out, nil
}

// tempFile writes data to a new temp file in dir and returns its path.
func (s *Store) tempFile(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("create temp file: %w", err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("write temp file: %w", werr)
	}
	return f.Name(), nil
}

// writeAtomic replaces path with data through a temp file in tmpDir, which
// must be on path's file system.
func (s *Store) writeAtomic(tmpDir, path string, data []byte) error {
	tmp, err := s.tempFile(tmpDir, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", filepath.Base(path), err)
	}
	return nil
}
