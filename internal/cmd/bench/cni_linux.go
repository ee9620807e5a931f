//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
)

// network is the configuration both implementations are measured with;
// only the directory the plugins are found in differs, and the features
// phase adds a field of ours (the second %s). cniVersion 1.0.0 is
// the newest the reference (containernetworking-plugins 1.1.1) speaks.
const network = `{
  "cniVersion": "1.0.0",
  "name": "bench",
  "plugins": [{
    "type": "ipvlan",
    "master": %q,
    "mode": "l2",%s
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "10.128.0.0/16"}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": %q
    }
  }]
}`

// verb is a CNI operation as a runtime performs it through libcni.
type verb string

const (
	verbAdd   verb = "ADD"
	verbCheck verb = "CHECK"
	verbDel   verb = "DEL"
)

// impl is one implementation under test: a plugin directory with its own
// IPAM data directory and libcni cache, in the shared environment.
type impl struct {
	name    string // "ours" or "reference"
	dir     string
	dataDir string
	env     *env
	cni     *libcni.CNIConfig
	conf    *libcni.NetworkConfigList
}

// newImpl prepares an implementation; extra is added to the plugin's
// configuration as it is (`"hostAccess": true,` and the like).
func newImpl(name, dir, tmp string, e *env, extra string) (*impl, error) {
	return newImplIn(name, dir, tmp, filepath.Join(tmp, name, "ipam"), e, extra)
}

// newImplIn is newImpl with the IPAM data directory given: implementations
// attached at once to one master must lease from one store.
func newImplIn(name, dir, tmp, dataDir string, e *env, extra string) (*impl, error) {
	for _, p := range []string{"ipvlan", "host-local"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return nil, fmt.Errorf("%s: plugin %s: %w", name, p, err)
		}
	}
	im := &impl{name: name, dir: dir, env: e, dataDir: dataDir}
	if err := os.MkdirAll(im.dataDir, 0o755); err != nil {
		return nil, err
	}
	conf, err := libcni.ConfListFromBytes(fmt.Appendf(nil, network, masterName, extra, im.dataDir))
	if err != nil {
		return nil, fmt.Errorf("%s: network configuration: %w", name, err)
	}
	im.conf = conf
	im.cni = libcni.NewCNIConfigWithCacheDir([]string{dir}, filepath.Join(tmp, name, "cache"), nil)
	return im, nil
}

// attachment is one container's attachment to the network.
type attachment struct {
	rt *libcni.RuntimeConf
}

// attachments names n attachments, one per container namespace.
func (im *impl) attachments(phase string, containers []ns.NetNS) []attachment {
	as := make([]attachment, len(containers))
	for i, c := range containers {
		as[i] = attachment{rt: &libcni.RuntimeConf{
			ContainerID: fmt.Sprintf("%s-%s-%05d", im.name, phase, i),
			NetNS:       c.Path(),
			IfName:      "eth0",
		}}
	}
	return as
}

// do runs v for a through libcni, started in the host namespace as a
// runtime would, and returns how long libcni took.
func (im *impl) do(ctx context.Context, v verb, a attachment) (time.Duration, error) {
	var d time.Duration
	err := im.env.host.Do(func(ns.NetNS) error {
		var err error
		start := time.Now()
		switch v {
		case verbAdd:
			_, err = im.cni.AddNetworkList(ctx, im.conf, a.rt)
		case verbCheck:
			err = im.cni.CheckNetworkList(ctx, im.conf, a.rt)
		case verbDel:
			err = im.cni.DelNetworkList(ctx, im.conf, a.rt)
		}
		d = time.Since(start)
		return err
	})
	if err != nil {
		return d, fmt.Errorf("%s: %s %s: %w", im.name, v, a.rt.ContainerID, err)
	}
	return d, nil
}

// cycles measures ADD, CHECK and DEL one container at a time: in each
// container, each implementation adds, checks and deletes its attachment
// before the next one does, the first to go taking turns. The host's own
// speed drifts, and the emulated guest's with it, by up to a fifth over
// minutes: measured in turn, the implementations meet the same drift, and
// their ratio does not depend on it. When floor is set, the floor runs
// once per container too, as one more in the turn, so that a ratio to it
// does not depend on the drift either; its times are returned apart.
func cycles(ctx context.Context, ims []*impl, phase string, containers []ns.NetNS, floor string) ([]Verbs, Dist, error) {
	verbs := []verb{verbAdd, verbCheck, verbDel}
	as := make([][]attachment, len(ims))
	ds := make([]map[verb][]time.Duration, len(ims))
	for k, im := range ims {
		as[k] = im.attachments(phase, containers)
		ds[k] = map[verb][]time.Duration{}
	}
	turn := len(ims)
	if floor != "" {
		turn++ // the floor's place is len(ims)
	}
	var floors []time.Duration
	for i := range containers {
		for j := range turn {
			k := (i + j) % turn
			if k == len(ims) {
				start := time.Now()
				if err := runFloor(floor); err != nil {
					return nil, Dist{}, err
				}
				floors = append(floors, time.Since(start))
				continue
			}
			for _, v := range verbs {
				d, err := ims[k].do(ctx, v, as[k][i])
				if err != nil {
					return nil, Dist{}, err
				}
				ds[k][v] = append(ds[k][v], d)
			}
		}
	}
	out := make([]Verbs, len(ims))
	for k := range ims {
		out[k] = Verbs{Add: summarize(ds[k][verbAdd]), Check: summarize(ds[k][verbCheck]), Del: summarize(ds[k][verbDel])}
	}
	var fd Dist
	if floor != "" {
		fd = summarize(floors)
	}
	return out, fd, nil
}

// parallel performs v on every attachment with workers goroutines and
// returns the wall time and the calls that failed.
func (im *impl) parallel(ctx context.Context, v verb, as []attachment, workers int) (time.Duration, []error) {
	next := make(chan attachment)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				if _, err := im.do(ctx, v, a); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, a := range as {
		next <- a
	}
	close(next)
	wg.Wait()
	return time.Since(start), errs
}

// checkLeaks fails when the implementation left anything behind in the
// given containers, the host namespace or its IPAM data directory.
func (im *impl) checkLeaks(phase string, containers []ns.NetNS) error {
	found, err := im.env.leaks(containers, im.dataDir)
	if err != nil {
		return fmt.Errorf("%s: %s: leak check: %w", im.name, phase, err)
	}
	if len(found) > 0 {
		more := ""
		if len(found) > 5 {
			more = fmt.Sprintf(" and %d more", len(found)-5)
			found = found[:5]
		}
		return &leakError{fmt.Sprintf("%s: %s: after DEL, left behind: %v%s", im.name, phase, found, more)}
	}
	return nil
}

// leakError is a leak found after DEL: the run goes on so that the table
// is printed, and fails at the end.
type leakError struct{ msg string }

func (e *leakError) Error() string { return e.msg }

func isLeak(err error) bool {
	var le *leakError
	return errors.As(err, &le)
}
