package disk

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

const (
	// indexRoot, in the data directory, holds one index directory per
	// network. No network is named so: names start with a letter or digit.
	indexRoot   = ".host-local-index"
	stampName   = "stamp"
	stampHeader = "# host-local index stamp v2\n"
	// maxEntryName bounds readable entry names; longer ones are hashed.
	maxEntryName = 200
)

// oldIndexNames are the index directories earlier versions kept inside the
// network directory, where the reference plugin reads every file of them.
var oldIndexNames = []string{".index", ".index.new", ".index.old"}

var errCorruptEntry = errors.New("corrupt index entry")

// escape keeps [A-Za-z0-9_-] and non-leading dots and percent-encodes every
// other byte, so the result is a file name that cannot contain '+' or '/'
// and unescape gives back the very bytes, valid UTF-8 or not.
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

func unescape(v string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", false
		}
		c, err := strconv.ParseUint(v[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), true
}

// entryName is "<escaped id>+<escaped ifname>", or "=<FNV-1a 128>" when
// that is too long for a file name. A hashed entry names its owner in its
// content, so a hash collision is detected, not trusted: no cryptographic
// hash is needed, and crypto/sha256 would bring the FIPS module's
// initialisation, and its 32 MiB of zeroed memory, to every plugin start.
func entryName(o store.Attachment) string {
	n := escape(o.ContainerID) + "+" + escape(o.IfName)
	if len(n) <= maxEntryName {
		return n
	}
	h := fnv.New128a()
	h.Write([]byte(leaseContent(o)))
	return "=" + hex.EncodeToString(h.Sum(nil))
}

func (s *Store) entryPath(o store.Attachment) string {
	return filepath.Join(s.index, entryName(o))
}

// An index entry is a symbolic link: one inode without a data block,
// read with one readlink(2) and replaced with symlink(2) and rename(2).
// Its target, never followed, is the owner's addresses separated by
// commas; an entry with a hashed name adds a space and its owner's lease
// content in hex.

func encodeEntry(o store.Attachment, ips []netip.Addr) string {
	var b []byte
	for i, ip := range ips {
		if i > 0 {
			b = append(b, ',')
		}
		b = ip.AppendTo(b)
	}
	if name := entryName(o); strings.HasPrefix(name, "=") {
		b = append(append(b, ' '), hex.EncodeToString([]byte(leaseContent(o)))...)
	}
	return string(b)
}

// decodeEntry parses the entry called name with target as encodeEntry
// wrote it and returns its owner and addresses.
func decodeEntry(name, target string) (store.Attachment, []netip.Addr, error) {
	list, ownerHex, hashed := strings.Cut(target, " ")
	var o store.Attachment
	if hashed {
		content, err := hex.DecodeString(ownerHex)
		if err != nil {
			return o, nil, fmt.Errorf("owner: %w", err)
		}
		o = parseOwner(content)
	} else {
		id, ifname, ok := strings.Cut(name, "+")
		var okID, okIf bool
		o.ContainerID, okID = unescape(id)
		o.IfName, okIf = unescape(ifname)
		if !ok || !okID || !okIf {
			return o, nil, errors.New("name is no owner")
		}
	}
	if entryName(o) != name {
		return o, nil, errors.New("name is not its owner's")
	}
	var ips []netip.Addr
	for f := range strings.SplitSeq(list, ",") {
		ip, err := netip.ParseAddr(f)
		if err != nil {
			return o, nil, err
		}
		ips = append(ips, ip)
	}
	return o, ips, nil
}

// readEntry returns the addresses the index lists for o, unverified; none
// when there is no entry.
func (s *Store) readEntry(o store.Attachment) ([]netip.Addr, error) {
	name := entryName(o)
	target, err := os.Readlink(filepath.Join(s.index, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errCorruptEntry, name, err)
	}
	got, ips, err := decodeEntry(name, target)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errCorruptEntry, name, err)
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
	target := encodeEntry(o, sortedAddrs(ips))
	for {
		// A temp link left by a crash is removed by the next
		// reconciliation.
		tmp := filepath.Join(s.index, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		err := os.Symlink(target, tmp)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			// No index directory yet: make it, then try again.
			if err := os.MkdirAll(s.index, 0o755); err != nil {
				return fmt.Errorf("create index: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("write index entry: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("replace index entry: %w", err)
		}
		return nil
	}
}

// stampMatches reports whether the index stamp records the network
// directory's current mtime.
func (s *Store) stampMatches() (bool, error) {
	data, err := readSmall(filepath.Join(s.index, stampName))
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
// clock tick then goes unseen until the next reconciliation.
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
	if err := os.MkdirAll(s.index, 0o755); err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	data := []byte(stampHeader + strconv.FormatInt(fi.ModTime().UnixNano(), 10) + "\n")
	return s.writeAtomic(s.index, filepath.Join(s.index, stampName), data)
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
	unstamp := os.Remove(filepath.Join(s.index, stampName))
	if errors.Is(unstamp, fs.ErrNotExist) {
		unstamp = nil
	}
	d, err := openDir(s.dir)
	if err != nil {
		return fmt.Errorf("reconcile index: %w", err)
	}
	defer d.close()
	names, err := d.names()
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
		if slices.Contains(oldIndexNames, n) {
			_ = os.RemoveAll(filepath.Join(s.dir, n))
			continue
		}
		ip, ok := leaseName(n)
		if !ok {
			continue
		}
		o, ok, err := parseLease(d.read(n))
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
		s.serveScan(fmt.Errorf("invalidate index stamp: %w", unstamp))
		return nil
	}
	if err := s.repairIndex(); err != nil {
		s.serveScan(err)
		return nil
	}
	s.scan, s.fresh, s.dirty = nil, true, true
	return nil
}

// serveScan reports why the index is left as it is; the locked section
// goes on from s.scan.
func (s *Store) serveScan(err error) {
	s.logf("network directory %s: index not updated, serving this call from a scan of the leases: %v", s.dir, err)
}

// repairIndex makes the index list exactly the leases of s.scan.
func (s *Store) repairIndex() error {
	if err := os.MkdirAll(s.index, 0o755); err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	names, err := listNames(s.index)
	if err != nil {
		return err
	}
	done := make(map[store.Attachment]bool, len(s.scan))
	for _, n := range names {
		if n == stampName {
			continue
		}
		path := filepath.Join(s.index, n)
		if !strings.HasPrefix(n, tmpPrefix) {
			target, err := os.Readlink(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.EINVAL) {
				return fmt.Errorf("read index entry: %w", err)
			}
			o, listed, derr := decodeEntry(n, target)
			if err == nil && derr == nil {
				if want, ok := s.scan[o]; ok {
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
