package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/etcdtest"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, PEM files named <name>.pem and <name>-key.pem.
func pki(t *testing.T, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster-ipam test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name string, der []byte, key *ecdsa.PrivateKey) {
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if key == nil {
			return
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca", caDER, nil)
	// The server's certificate is for server authentication only, as a
	// member's needs no more for cluster-ipam, which speaks gRPC to it.
	for i, leaf := range []struct {
		name string
		eku  []x509.ExtKeyUsage
	}{
		{"server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: leaf.name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: leaf.eku,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		write(leaf.name, der, key)
	}
}

// TestTLS: against https endpoints that require client certificates, an
// ADD with caFile, certFile and keyFile allocates; one without the client
// certificate fails with code 11 and writes nothing.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pki(t, dir)
	f := func(name string) string { return filepath.Join(dir, name) }
	clientCert, err := tls.LoadX509KeyPair(f("client.pem"), f("client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(f("ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	c := startCluster(t, &etcdtest.TLS{
		CertFile: f("server.pem"), KeyFile: f("server-key.pem"), ClientCAFile: f("ca.pem"),
		Client: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}},
	})
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	withCert := netConf("tls", c.Endpoints(), map[string]any{"etcd": map[string]any{
		"endpoints": c.Endpoints(), "caFile": f("ca.pem"), "certFile": f("client.pem"), "keyFile": f("client-key.pem")}})
	ips, err := add(ctx, call{ID: "with-cert", Stdin: withCert})
	if err != nil {
		t.Fatal(err)
	}
	s := readState(t, dump(t, cli, prefix), prefix, "tls")
	if s.ips[ips[0]] != "node-a/with-cert/eth0" {
		t.Errorf("etcd records %q for %s", s.ips[ips[0]], ips[0])
	}
	if _, err := run(ctx, call{Command: "STATUS", Stdin: withCert}); err != nil {
		t.Errorf("STATUS with the client certificate: %v", err)
	}

	noCert := netConf("tls", c.Endpoints(), map[string]any{"etcd": map[string]any{
		"endpoints": c.Endpoints(), "caFile": f("ca.pem"), "dialTimeout": 2}})
	before := dump(t, cli, prefix)
	if _, err := add(ctx, call{ID: "no-cert", Stdin: noCert}); code(err) != types.ErrTryAgainLater {
		t.Errorf("ADD without a client certificate: %v, want code 11", err)
	}
	if len(dump(t, cli, prefix)) != len(before) {
		t.Error("the ADD without a client certificate wrote keys")
	}
	if _, err := run(ctx, call{Command: "STATUS", Stdin: noCert}); code(err) != types.ErrPluginNotAvailable {
		t.Errorf("STATUS without a client certificate: %v, want code 50", err)
	}
}
