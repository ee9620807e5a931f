package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	indexNew    = ".index.new"
	indexOld    = ".index.old"
	stampName   = "stamp"
	entryHeader = "# host-local index entry v1\n"
	stampHeader = "# host-local index stamp v1\n"
	// maxEntryName bounds readable entry names; longer ones are hashed.
	maxEntryName = 200
)

var errCorruptEntry = errors.New("corrupt index entry")

// entry is the JSON body of an index entry file.
type entry struct {
	ContainerID string       `json:"containerID"`
	IfName      string       `json:"ifname"`
	IPs         []netip.Addr `json:"ips"`
}

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

func encodeEntry(o store.Attachment, ips []netip.Addr) ([]byte, error) {
	body, err := json.Marshal(entry{ContainerID: o.ContainerID, IfName: o.IfName, IPs: ips})
	if err != nil {
		return nil, fmt.Errorf("encode index entry: %w", err)
	}
	return append(append([]byte(entryHeader), body...), '\n'), nil
}

// readEntry returns the addresses the index lists for o, unverified; none
// when there is no entry.
func (s *Store) readEntry(o store.Attachment) ([]netip.Addr, error) {
	data, err := os.ReadFile(s.entryPath(o))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read index entry: %w", err)
	}
	body, ok := bytes.CutPrefix(data, []byte(entryHeader))
	if !ok {
		return nil, fmt.Errorf("%w %s: bad header", errCorruptEntry, entryName(o))
	}
	var e entry
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errCorruptEntry, entryName(o), err)
	}
	if e.ContainerID != o.ContainerID || e.IfName != o.IfName {
		return nil, nil // another owner under the same hashed name
	}
	return e.IPs, nil
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
	data, err := encodeEntry(o, slices.Compact(ips))
	if err != nil {
		return err
	}
	// The temp file goes in the network directory: a crash that leaves
	// it there also leaves the directory changed and unrecorded, so the
	// next rebuild removes it.
	return s.writeAtomic(s.dir, path, data)
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

// rebuild recreates the index from a full scan of the lease files and
// removes temp files left by crashes. The new index is built aside and
// swapped in; until its stamp is written, it is rebuilt again if needed.
func (s *Store) rebuild() error {
	// Until the new index is installed, nothing may stamp the old one.
	s.fresh = false
	names, err := s.names()
	if err != nil {
		return err
	}
	owners := map[store.Attachment][]netip.Addr{}
	for _, n := range names {
		if strings.HasPrefix(n, tmpPrefix) {
			if err := os.Remove(filepath.Join(s.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove temp file: %w", err)
			}
			continue
		}
		ip, ok := leaseName(n)
		if !ok {
			continue
		}
		o, ok, err := s.owner(ip)
		if err != nil {
			return err
		}
		if ok {
			owners[o] = append(owners[o], ip)
		}
	}
	s.dirty = true
	fresh := filepath.Join(s.dir, indexNew)
	if err := os.RemoveAll(fresh); err != nil {
		return fmt.Errorf("remove partial index: %w", err)
	}
	if err := os.Mkdir(fresh, 0o755); err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	for o, ips := range owners {
		slices.SortFunc(ips, netip.Addr.Compare)
		data, err := encodeEntry(o, ips)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(fresh, entryName(o)), data, 0o600); err != nil {
			return fmt.Errorf("write index entry: %w", err)
		}
	}
	s.hit("rebuild:new-index-written")
	live, old := filepath.Join(s.dir, indexDir), filepath.Join(s.dir, indexOld)
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove old index: %w", err)
	}
	if err := os.Rename(live, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("retire index: %w", err)
	}
	s.hit("rebuild:old-index-retired")
	if err := os.Rename(fresh, live); err != nil {
		return fmt.Errorf("install index: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove old index: %w", err)
	}
	s.fresh = true
	return nil
}
