//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

// stateDir holds the registries of the host-side parts several
// attachments share: a VLAN sub-interface the plugin made, a master's
// hostAccess shim. It is under /run so that it goes at reboot, as the
// links and routes it describes do.
const stateDir = "/run/ipvlan-cni"

// registry lists the attachments that use one shared host-side part, so
// that the last one to go removes it. It is a directory of one file per
// attachment, beside a lock file; every change and every decision to
// create or remove the part happen under the lock (flock), so concurrent
// plugins on one part see each other's attachments. Its path names the
// host's network namespace (by inode) as well as the part, since a link
// index is unique within one namespace only:
// /run/ipvlan-cni/ns<inode>/<part>/ and /run/ipvlan-cni/ns<inode>/<part>.lock.
type registry struct {
	dir  string
	lock *os.File
}

// attachment is one file of a registry: which attachment it is and, for
// hostAccess, the container addresses its host routes lead to.
type attachment struct {
	Network     string   `json:"network"`
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifName"`
	IPs         []string `json:"ips,omitempty"`
}

// file is the attachment's file name: a hash of who it is, since a
// container ID or an interface name may hold any character but '/'.
func (a attachment) file() string {
	h := fnv.New64a()
	for _, s := range []string{a.Network, a.ContainerID, a.IfName} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%016x.json", h.Sum64())
}

// lockRegistry opens the registry of part (like "vlan-3.10") in the
// namespace of the calling thread and takes its lock; unlock releases it.
func lockRegistry(part string) (*registry, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("identify the network namespace: %w", err)
	}
	base := filepath.Join(stateDir, fmt.Sprintf("ns%d", st.Ino))
	dir := filepath.Join(base, part)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return &registry{dir: dir, lock: f}, nil
}

// unlock releases the lock (closing the file drops the flock).
func (r *registry) unlock() { r.lock.Close() }

// put records a, replacing what was recorded for the same attachment. The
// file is written under a temporary name and renamed, so a plugin killed
// meanwhile leaves no half-written file.
func (r *registry) put(a attachment) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.dir, "."+a.file())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record attachment: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, a.file())); err != nil {
		return fmt.Errorf("record attachment: %w", err)
	}
	return nil
}

// remove forgets a and returns what was recorded for it, if anything.
func (r *registry) remove(a attachment) (attachment, bool, error) {
	path := filepath.Join(r.dir, a.file())
	got, err := readAttachment(path)
	if errors.Is(err, fs.ErrNotExist) {
		return attachment{}, false, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return attachment{}, false, fmt.Errorf("forget attachment: %w", err)
	}
	return got, err == nil, nil
}

// list returns every attachment recorded. A file that cannot be decoded is
// an attachment all the same: it keeps the shared part.
func (r *registry) list() ([]attachment, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.dir, err)
	}
	var out []attachment
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		a, err := readAttachment(filepath.Join(r.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// collect forgets the attachments of network that valid (by file name)
// does not list, and returns the attachments left.
func (r *registry) collect(network string, valid map[string]bool) ([]attachment, error) {
	all, err := r.list()
	if err != nil {
		return nil, err
	}
	var kept []attachment
	for _, a := range all {
		if a.Network == network && !valid[a.file()] {
			if _, _, err := r.remove(a); err != nil {
				return nil, err
			}
			continue
		}
		kept = append(kept, a)
	}
	return kept, nil
}

func readAttachment(path string) (attachment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return attachment{}, err
	}
	var a attachment
	if err := json.Unmarshal(b, &a); err != nil {
		return attachment{}, fmt.Errorf("decode %s: %w", path, err)
	}
	return a, nil
}

// attachmentOf names the attachment a verb works for.
func attachmentOf(network, containerID, ifName string) attachment {
	return attachment{Network: network, ContainerID: containerID, IfName: ifName}
}

// The verbs' hooks for the shared parts: hostAccess's shim and routes, and
// the VLAN sub-interface. DEL, GC and STATUS work in the host namespace
// only, so that they work when the container's namespace is gone.

// inHostSession runs fn with a session without the container's
// namespace, unless the configuration has neither hostAccess nor vlan.
func inHostSession(args *pluginmain.CmdArgs, conf *NetConf, fn func(s *session) error) error {
	if !conf.HostAccess && conf.VLAN == 0 {
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	s := &session{args: args, conf: conf, host: h, master: h}
	defer s.close()
	return fn(s)
}

// sharedParents resolves the master and the ipvlan links' parent (the
// VLAN sub-interface with vlan set). ok is false when either is missing:
// what was on them went with them.
func (s *session) sharedParents() (master, parent netlink.Link, ok bool, err error) {
	master, err = s.resolveMaster()
	if err != nil {
		var e *types.Error
		if errors.As(err, &e) && e.Code == types.ErrInvalidNetworkConfig {
			return nil, nil, false, nil // no master, no default route
		}
		return nil, nil, false, err
	}
	parent = master
	if s.conf.VLAN != 0 {
		if parent, err = findVLAN(s.host, master, s.conf.VLAN); err != nil || parent == nil {
			return master, nil, false, err
		}
	}
	return master, parent, true, nil
}

// releaseShared is DEL's part for hostAccess and vlan, once the
// container's link is gone: the attachment's host routes (the addresses
// recorded at ADD, and prevResult's), the shim after the last attachment,
// then the VLAN sub-interface after its last.
func releaseShared(args *pluginmain.CmdArgs, conf *NetConf) error {
	return inHostSession(args, conf, (*session).releaseShared)
}

func (s *session) releaseShared() error {
	args, conf := s.args, s.conf
	master, parent, ok, err := s.sharedParents()
	if err != nil {
		return err
	}
	if ok && conf.HostAccess {
		r, err := hostAccessRegistry(parent)
		if err != nil {
			return err
		}
		me := attachmentOf(conf.Name, args.ContainerID, args.IfName)
		for _, ip := range ourIPs(conf.prev(), args) {
			me.IPs = append(me.IPs, ip.String())
		}
		err = s.dropHostAccess(r, parent, me)
		r.unlock()
		if err != nil {
			return err
		}
	}
	if master != nil && conf.VLAN != 0 {
		return s.releaseVLAN(master, conf.VLAN)
	}
	return nil
}

// gcShared is GC's part for hostAccess and vlan.
func gcShared(args *pluginmain.CmdArgs, conf *NetConf) error {
	return inHostSession(args, conf, (*session).gcShared)
}

func (s *session) gcShared() error {
	conf := s.conf
	valid := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[attachmentOf(conf.Name, a.ContainerID, a.IfName).file()] = true
	}
	master, parent, ok, err := s.sharedParents()
	if err != nil {
		return err
	}
	if ok && conf.HostAccess {
		if err := s.gcHostAccess(parent, valid); err != nil {
			return err
		}
	}
	if master != nil && conf.VLAN != 0 {
		return s.gcVLAN(master, valid)
	}
	return nil
}

// statusShared is STATUS's part for hostAccess.
func statusShared(args *pluginmain.CmdArgs, conf *NetConf) error {
	if !conf.HostAccess {
		return nil
	}
	return inHostSession(args, conf, (*session).statusShared)
}

func (s *session) statusShared() error {
	_, parent, ok, err := s.sharedParents()
	if err != nil || !ok {
		return err
	}
	return s.statusHostAccess(parent)
}
