// Package leases keeps the DHCP daemon's leases on disk, one JSON file per
// attachment in a directory of the daemon's, so a daemon restarted (or
// killed with SIGKILL) renews every live lease instead of forgetting it.
//
// A file is written atomically: to a temporary file in the same
// directory, synced, renamed over the old one, and the directory synced,
// so a crash leaves the old record or the new one, never half of either.
// It needs read and write access to the directory and nothing else.
package leases

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/client"
)

// Key names one attachment: the lease is the attachment's, not the MAC's.
type Key struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (k Key) String() string {
	return fmt.Sprintf("%s/%s/%s", k.Network, k.ContainerID, k.IfName)
}

// Attachment is how the daemon speaks for one attachment.
type Attachment struct {
	// Netns is the container's network namespace (a path), Master the
	// interface the daemon speaks DHCP on, Mode the ipvlan mode.
	Netns  string `json:"netns,omitempty"`
	Master string `json:"master,omitempty"`
	Mode   string `json:"mode,omitempty"`
	// ClientID, Broadcast, Request and Provide are the attachment's
	// identity on the wire (see client.Identity); Provide holds the raw
	// options, code to value.
	ClientID  []byte           `json:"clientID,omitempty"`
	Broadcast bool             `json:"broadcast"`
	Request   []uint8          `json:"request,omitempty"`
	Provide   map[uint8][]byte `json:"provide,omitempty"`
}

// Identity is the attachment's client.Identity, its options in code order.
func (a *Attachment) Identity() client.Identity {
	id := client.Identity{ClientID: a.ClientID, Broadcast: a.Broadcast}
	for _, c := range a.Request {
		id.Request = append(id.Request, dhcpv4.GenericOptionCode(c))
	}
	for _, c := range slices.Sorted(maps.Keys(a.Provide)) {
		id.Provide = append(id.Provide, dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(c), a.Provide[c]))
	}
	return id
}

// Record is what the daemon keeps about one attachment's lease.
type Record struct {
	Key Key `json:"key"`
	Attachment
	Lease client.Lease `json:"lease"`
	// Released marks a lease whose DEL came while the DHCPRELEASE could
	// not be sent: the daemon retries the release and then forgets it.
	Released bool `json:"released,omitempty"`
	// Updated is when the record was last written.
	Updated time.Time `json:"updated"`
}

// Store is a directory of records.
type Store struct {
	dir string
}

// Open returns the store in dir, creating the directory (mode 0700).
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lease directory %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

const suffix = ".json"

func (s *Store) path(k Key) string {
	h := sha256.Sum256([]byte(k.Network + "\x00" + k.ContainerID + "\x00" + k.IfName))
	return filepath.Join(s.dir, hex.EncodeToString(h[:16])+suffix)
}

// Put writes r atomically, replacing any record of the same key.
func (s *Store) Put(r *Record) error {
	r.Updated = time.Now()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	dst := s.path(r.Key)
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write lease of %s: %w", r.Key, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, nothing is there
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write lease of %s: %w", r.Key, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync lease of %s: %w", r.Key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write lease of %s: %w", r.Key, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("write lease of %s: %w", r.Key, err)
	}
	return s.syncDir()
}

func (s *Store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync lease directory %s: %w", s.dir, err)
	}
	return nil
}

// ErrNotFound says a key has no record.
var ErrNotFound = errors.New("no lease")

// Get reads the record of k.
func (s *Store) Get(k Key) (*Record, error) {
	b, err := os.ReadFile(s.path(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode lease of %s: %w", k, err)
	}
	return &r, nil
}

// Delete removes the record of k; a missing record is no error.
func (s *Store) Delete(k Key) error {
	if err := os.Remove(s.path(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove lease of %s: %w", k, err)
	}
	return s.syncDir()
}

// List reads every record. A file that does not decode is reported in the
// error and skipped; the others are returned.
func (s *Store) List() ([]*Record, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read lease directory %s: %w", s.dir, err)
	}
	var (
		out  []*Record
		errs []error
	)
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), suffix) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			errs = append(errs, fmt.Errorf("decode %s: %w", e.Name(), err))
			continue
		}
		out = append(out, &r)
	}
	return out, errors.Join(errs...)
}
