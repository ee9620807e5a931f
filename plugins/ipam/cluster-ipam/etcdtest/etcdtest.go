// Package etcdtest runs a real etcd cluster on loopback ports for
// cluster-ipam's tests and benchmark: Debian's etcd-server binary, one
// process and one data directory per member, started and stopped by the
// caller. It needs no privilege.
package etcdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is where Debian's etcd-server package installs etcd.
const Binary = "/usr/bin/etcd"

// T is the part of *testing.T that Require uses.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Require stops a test that needs etcd when the server is missing: it
// fails under CI (CI=true), where make deps must have installed it, and
// skips with the reason elsewhere.
func Require(t T) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd server missing under CI: %v (make deps installs etcd-server)", err)
		}
		t.Skipf("etcd server missing: %v (make deps installs etcd-server)", err)
	}
}

// TLS is the server side of https client endpoints: the server's
// certificate and the CA that signs the clients' certificates, which the
// server then requires.
type TLS struct {
	CertFile, KeyFile, ClientCAFile string
	Client                          *tls.Config // for the readiness check
}

// Cluster is a running etcd cluster.
type Cluster struct {
	dir     string
	tls     *TLS
	members []*member
}

type member struct {
	name       string
	clientURL  string
	peerURL    string
	metricsURL string
	cmd        *exec.Cmd
	done       chan struct{}
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Start starts an n-member cluster with its data under dir and waits until
// it answers. t, when not nil, makes the client endpoints https.
func Start(ctx context.Context, dir string, n int, t *TLS) (*Cluster, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("etcd server: %w (install Debian's etcd-server package: make deps)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if t != nil {
		scheme = "https"
	}
	c := &Cluster{dir: dir, tls: t}
	var initial []string
	for i := range n {
		m := &member{
			name:       fmt.Sprintf("m%d", i),
			clientURL:  fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3*i]),
			peerURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]),
			metricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	for i := range c.members {
		if err := c.start(i, strings.Join(initial, ",")); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.Wait(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(i int, initial string) error {
	m := c.members[i]
	args := []string{
		"--name", m.name,
		"--data-dir", filepath.Join(c.dir, m.name),
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--listen-metrics-urls", m.metricsURL,
		"--initial-cluster-token", "cluster-ipam-test",
		"--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "error",
		// Loopback: elect quickly after a member stops.
		"--heartbeat-interval", "50", "--election-timeout", "500",
	}
	if initial != "" {
		args = append(args, "--initial-cluster", initial)
	} else {
		var all []string
		for _, o := range c.members {
			all = append(all, o.name+"="+o.peerURL)
		}
		args = append(args, "--initial-cluster", strings.Join(all, ","))
	}
	if c.tls != nil {
		args = append(args, "--cert-file", c.tls.CertFile, "--key-file", c.tls.KeyFile,
			"--client-cert-auth", "--trusted-ca-file", c.tls.ClientCAFile)
	}
	log, err := os.OpenFile(filepath.Join(c.dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	m.cmd = exec.Command(Binary, args...)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.name, err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(m.cmd, m.done)
	return nil
}

// Endpoints returns the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL)
	}
	return out
}

// Stop stops member i (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (c *Cluster) Stop(i int) {
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// Restart starts stopped member i again on its data directory.
func (c *Cluster) Restart(i int) error {
	if c.members[i].cmd != nil {
		return nil
	}
	return c.start(i, "")
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}

// Client returns a client of the running members.
func (c *Cluster) Client(ctx context.Context) (*clientv3.Client, error) {
	var eps []string
	for _, m := range c.members {
		if m.cmd != nil {
			eps = append(eps, m.clientURL)
		}
	}
	var tc *tls.Config
	if c.tls != nil {
		tc = c.tls.Client
	}
	return clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: 5 * time.Second, Context: ctx, Logger: zap.NewNop()})
}

// Wait returns when the running members answer a consistent read.
func (c *Cluster) Wait(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cli, err := c.Client(ctx)
	if err != nil {
		return fmt.Errorf("etcd cluster in %s: %w", c.dir, err)
	}
	defer cli.Close()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "/health-check")
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd cluster in %s did not answer (logs there): %w", c.dir, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Committed returns etcd_server_proposals_committed_total of a running
// member: every write transaction is one committed proposal, a read
// none.
func (c *Cluster) Committed(ctx context.Context) (float64, error) {
	var errs []error
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		v, err := metric(ctx, m.metricsURL+"/metrics", "etcd_server_proposals_committed_total")
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return 0, errors.Join(append(errs, errors.New("no member answered"))...)
}

func metric(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("%s: no metric %s", url, name)
}
