package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

const (
	indexDir    = ".index"
	stampName   = "stamp"
	entryHeader = "# host-local index entry v2\n"
	stampHeader = "# host-local index stamp v2\n"
	// maxEntryName bounds readable entry names; longer ones are hashed.
	maxEntryName = 200
)

var errCorruptEntry = errors.New("corrupt index entry")

// escape keeps [A-Za-z0-9_-] and non-leading dots and percent-encodes the
// rest, so the result is a file name that cannot contain '+' or '/'.
func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// entryName is "<escaped id>+<escaped ifname>", or "=<sha256>" when that is
// too long for a file name. The entry's content names its owner, so a hash
// collision is detected, not trusted.
func entryName(o store.Attachment) string {
	n := escape(o.ContainerID) + "+" + escape(o.IfName)
	if len(n) <= maxEntryName {
		return n
	}
	sum := sha256.Sum256([]byte(leaseContent(o)))
	return "=" + hex.EncodeToString(sum[:])
}

func (s *Store) entryPath(o store.Attachment) string {
	return filepath.Join(s.dir, indexDir, entryName(o))
}

// encodeEntry writes an entry as text: the header, then
//
//	owner "<containerID>" "<ifname>"
//	ips <ip> <ip> ...
//
// The owner is Go-quoted, which keeps every byte: an interface name that is
// not valid UTF-8 comes back exactly as it was.
func encodeEntry(o store.Attachment, ips []netip.Addr) []byte {
	b := []byte(entryHeader + "owner ")
	b = strconv.AppendQuote(b, o.ContainerID)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, o.IfName)
	b = append(b, "\nips"...)
	for _, ip := range ips {
		b = append(b, ' ')
		b = ip.AppendTo(b)
	}
	return append(b, '\n')
}

// decodeEntry parses what encodeEntry wrote.
func decodeEntry(data []byte) (store.Attachment, []netip.Addr, error) {
	body, ok := strings.CutPrefix(string(data), entryHeader)
	if !ok {
		return store.Attachment{}, nil, errors.New("bad header")
	}
	ownerLine, ipsLine, ok := strings.Cut(body, "\n")
	if !ok {
		return store.Attachment{}, nil, errors.New("no addresses line")
	}
	quoted, ok := strings.CutPrefix(ownerLine, "owner ")
	if !ok {
		return store.Attachment{}, nil, errors.New("no owner line")
	}
	id, err := strconv.QuotedPrefix(quoted)
	if err != nil {
		return store.Attachment{}, nil, fmt.Errorf("container ID: %w", err)
	}
	ifname, ok := strings.CutPrefix(quoted[len(id):], " ")
	if !ok {
		return store.Attachment{}, nil, errors.New("no interface name")
	}
	var o store.Attachment
	if o.ContainerID, err = strconv.Unquote(id); err != nil {
		return store.Attachment{}, nil, fmt.Errorf("container ID: %w", err)
	}
	if o.IfName, err = strconv.Unquote(ifname); err != nil {
		return store.Attachment{}, nil, fmt.Errorf("interface name: %w", err)
	}
	fields, ok := strings.CutPrefix(strings.TrimSuffix(ipsLine, "\n"), "ips")
	if !ok {
		return store.Attachment{}, nil, errors.New("no addresses line")
	}
	var ips []netip.Addr
	for _, f := range strings.Fields(fields) {
		ip, err := netip.ParseAddr(f)
		if err != nil {
			return store.Attachment{}, nil, err
		}
		ips = append(ips, ip)
	}
	return o, ips, nil
}

// readEntry returns the addresses the index lists for o, unverified; none
// when there is no entry.
func (s *Store) readEntry(o store.Attachment) ([]netip.Addr, error) {
	data, err := readSmall(s.entryPath(o))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read index entry: %w", err)
	}
	got, ips, err := decodeEntry(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errCorruptEntry, entryName(o), err)
	}
	if got != o {
		return nil, nil // another owner under the same hashed name
	}
	return ips, nil
}

// writeEntry replaces o's entry with ips atomically, or removes it when ips
// is empty.
func (s *Store) writeEntry(o store.Attachment, ips []netip.Addr) error {
	path := s.entryPath(o)
	if len(ips) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove index entry: %w", err)
		}
		return nil
	}
	ips = slices.Clone(ips)
	slices.SortFunc(ips, netip.Addr.Compare)
	// The temp file goes in the network directory: a crash that leaves
	// it there also leaves the directory changed and unrecorded, so the
	// next reconciliation removes it.
	return s.writeAtomic(s.dir, path, encodeEntry(o, slices.Compact(ips)))
}

// stampMatches reports whether the index stamp records the network
// directory's current mtime.
func (s *Store) stampMatches() (bool, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, indexDir, stampName))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read index stamp: %w", err)
	}
	body, ok := bytes.CutPrefix(data, []byte(stampHeader))
	if !ok {
		return false, nil
	}
	recorded, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
	if err != nil {
		return false, nil
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return false, fmt.Errorf("stat network directory: %w", err)
	}
	return fi.ModTime().UnixNano() == recorded, nil
}

// writeStamp records the network directory's mtime as matching the index.
// It first sets that mtime one nanosecond back, below any time the kernel
// stamps on a later change (even within the same clock tick), and records
// the value the file system kept. Where the mtime cannot be set, the
// kernel's value is recorded: a change by another program within the same
// clock tick then goes unseen until the next rebuild.
func (s *Store) writeStamp() error {
	s.hit("stamp:start")
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("stat network directory: %w", err)
	}
	if err := os.Chtimes(s.dir, time.Time{}, fi.ModTime().Add(-time.Nanosecond)); err == nil {
		if fi, err = os.Stat(s.dir); err != nil {
			return fmt.Errorf("stat network directory: %w", err)
		}
	}
	s.hit("stamp:mtime-set")
	index := filepath.Join(s.dir, indexDir)
	// The temp file goes in the index directory, so writing the stamp
	// does not change the network directory's mtime.
	data := []byte(stampHeader + strconv.FormatInt(fi.ModTime().UnixNano(), 10) + "\n")
	return s.writeAtomic(index, filepath.Join(index, stampName), data)
}

// reconcile brings the index in line with the lease files: it reads every
// lease and every entry, rewrites the entries that differ and removes those
// of owners without a lease, and temp files left by crashes. Its writes
// follow what changed since the index was stamped, not the size of the
// directory.
//
// When a lease cannot be read, or the index cannot be written, the rest of
// the locked section works from the leases read here and leaves the index
// unstamped, so the next user reconciles again. That needs no free space.
func (s *Store) reconcile() error {
	s.fresh = false
	// From here until the new stamp, the index must not look current,
	// even if this is interrupted before the directory changes.
	unstamp := os.Remove(filepath.Join(s.dir, indexDir, stampName))
	if errors.Is(unstamp, fs.ErrNotExist) {
		unstamp = nil
	}
	names, err := s.names()
	if err != nil {
		return fmt.Errorf("reconcile index: %w", err)
	}
	s.scan = map[store.Attachment][]netip.Addr{}
	complete := true // every name like an address was read, or is no lease
	for _, n := range names {
		if strings.HasPrefix(n, tmpPrefix) {
			_ = os.Remove(filepath.Join(s.dir, n)) // as good as left until next time
			continue
		}
		ip, ok := leaseName(n)
		if !ok {
			continue
		}
		o, ok, err := s.owner(ip)
		if err != nil {
			s.skip(ip, err)
			// A file we may not read now could be read later, without
			// the directory changing: never stamp the index over it.
			complete = complete && errors.Is(err, errNotLease)
			continue
		}
		if ok {
			s.scan[o] = append(s.scan[o], ip)
		}
	}
	if !complete {
		return nil
	}
	if unstamp != nil {
		return s.serveScan(fmt.Errorf("invalidate index stamp: %w", unstamp))
	}
	if err := s.repairIndex(); err != nil {
		return s.serveScan(err)
	}
	s.scan, s.fresh, s.dirty = nil, true, true
	return nil
}

// serveScan reports why the index is left as it is; the locked section
// goes on from s.scan.
func (s *Store) serveScan(err error) error {
	s.logf("network directory %s: index not updated, serving this call from a scan of the leases: %v", s.dir, err)
	return nil
}

// repairIndex makes the index list exactly the leases of s.scan.
func (s *Store) repairIndex() error {
	index := filepath.Join(s.dir, indexDir)
	names, err := listNames(index)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(index, 0o755); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		names, err = nil, nil
	}
	if err != nil {
		return err
	}
	done := make(map[store.Attachment]bool, len(s.scan))
	for _, n := range names {
		if n == stampName {
			continue
		}
		path := filepath.Join(index, n)
		if !strings.HasPrefix(n, tmpPrefix) {
			data, err := readSmall(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read index entry: %w", err)
			}
			o, listed, derr := decodeEntry(data)
			if err == nil && derr == nil && entryName(o) == n {
				if want, ok := s.scan[o]; ok && !done[o] {
					done[o] = true
					if !slices.Equal(sortedAddrs(want), listed) {
						if err := s.writeEntry(o, want); err != nil {
							return err
						}
						s.hit("reconcile:entry-written")
					}
					continue
				}
			}
		}
		// A temp file, a corrupt entry, or the entry of an owner
		// without a lease.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove index entry: %w", err)
		}
		s.hit("reconcile:entry-removed")
	}
	for o, ips := range s.scan {
		if !done[o] {
			if err := s.writeEntry(o, ips); err != nil {
				return err
			}
			s.hit("reconcile:entry-written")
		}
	}
	return nil
}

func sortedAddrs(ips []netip.Addr) []netip.Addr {
	ips = slices.Clone(ips)
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips)
}
