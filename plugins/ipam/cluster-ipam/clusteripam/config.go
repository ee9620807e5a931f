package clusteripam

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
)

// Defaults of the ipam fields cluster-ipam adds to host-local's.
const (
	DefaultPrefix      = "/cluster-ipam/"
	DefaultDialTimeout = 5 * time.Second
	DefaultBlockSize4  = 26
	DefaultBlockSize6  = 122
	maxDialTimeout     = 60 * time.Second
)

// Config is a validated cluster-ipam configuration: host-local's fields
// (ranges, routes, requested addresses, GC list) and the etcd, blockSize
// and node fields.
type Config struct {
	*hostlocal.Config
	Etcd Etcd
	// BlockBits is the block prefix length of each range set.
	BlockBits []int
	Node      string
}

// Etcd is where the store is and how to reach it.
type Etcd struct {
	Endpoints   []string
	TLS         *tls.Config // nil for http endpoints
	Prefix      string      // ends with "/"
	DialTimeout time.Duration
}

type etcdConf struct {
	Endpoints   []string `json:"endpoints"`
	CAFile      string   `json:"caFile"`
	CertFile    string   `json:"certFile"`
	KeyFile     string   `json:"keyFile"`
	Prefix      *string  `json:"prefix"`
	DialTimeout *float64 `json:"dialTimeout"`
}

type clusterConf struct {
	IPAM struct {
		Etcd      *etcdConf `json:"etcd"`
		BlockSize *int      `json:"blockSize"`
		Node      *string   `json:"node"`
	} `json:"ipam"`
}

func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// validNode reports whether s is a node name: it becomes part of etcd
// keys. Letters, digits, '_', '.' and '-', starting with a letter or
// digit, at most 253 bytes (a DNS name's length). A loop, not a regexp:
// the plugin starts per verb and a compiled {0,252} costs milliseconds.
func validNode(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '_' && r != '.' && r != '-')) {
			return false
		}
	}
	return true
}

// ParseConfig parses and validates the network config on stdin and the
// CNI_ARGS value. Its errors are *types.Error: 6 when the JSON does not
// decode, 4 for a bad CNI_ARGS, 7 for an invalid field, naming it and its
// value. hostname supplies the default node name.
func ParseConfig(stdin []byte, envArgs string, hostname func() (string, error)) (*Config, error) {
	hc, err := hostlocal.ParseConfig(stdin, envArgs)
	if err != nil {
		return nil, err
	}
	var cc clusterConf
	if err := json.Unmarshal(stdin, &cc); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, invalid("ipam.%s has a value of the wrong type: %v", te.Field, err)
		}
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network config: %v", err), "")
	}
	c := &Config{Config: hc}
	if err := c.parseEtcd(cc.IPAM.Etcd); err != nil {
		return nil, err
	}
	if err := c.parseBlockSize(cc.IPAM.BlockSize); err != nil {
		return nil, err
	}
	if cc.IPAM.Node != nil {
		c.Node = *cc.IPAM.Node
		if !validNode(c.Node) {
			return nil, invalid("ipam.node %q is not a node name: letters, digits, '_', '.' and '-', starting with a letter or digit, at most 253", c.Node)
		}
	} else {
		h, err := hostname()
		if err != nil {
			return nil, invalid("ipam.node is not set and the host name is unknown: %v", err)
		}
		if !validNode(h) {
			return nil, invalid("ipam.node is not set and the host name %q is not a node name: set ipam.node", h)
		}
		c.Node = h
	}
	return c, nil
}

func (c *Config) parseEtcd(ec *etcdConf) *types.Error {
	if ec == nil {
		return invalid("ipam.etcd is missing: set ipam.etcd.endpoints")
	}
	if len(ec.Endpoints) == 0 {
		return invalid("ipam.etcd.endpoints is empty: list the URLs of the etcd members")
	}
	schemes := map[string]bool{}
	for i, e := range ec.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return invalid("ipam.etcd.endpoints[%d] %q is not an etcd URL: http://host:port or https://host:port", i, e)
		}
		schemes[u.Scheme] = true
		c.Etcd.Endpoints = append(c.Etcd.Endpoints, e)
	}
	if len(schemes) > 1 {
		return invalid("ipam.etcd.endpoints %q mix http and https", ec.Endpoints)
	}
	c.Etcd.Prefix = DefaultPrefix
	if ec.Prefix != nil {
		p := *ec.Prefix
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00") {
			return invalid("ipam.etcd.prefix %q does not start with /", p)
		}
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		c.Etcd.Prefix = p
	}
	c.Etcd.DialTimeout = DefaultDialTimeout
	if ec.DialTimeout != nil {
		d := time.Duration(*ec.DialTimeout * float64(time.Second))
		if d <= 0 || d > maxDialTimeout {
			return invalid("ipam.etcd.dialTimeout %v is not a number of seconds above 0 and at most %v", *ec.DialTimeout, maxDialTimeout.Seconds())
		}
		c.Etcd.DialTimeout = d
	}
	if !schemes["https"] {
		for _, f := range []struct{ name, v string }{{"caFile", ec.CAFile}, {"certFile", ec.CertFile}, {"keyFile", ec.KeyFile}} {
			if f.v != "" {
				return invalid("ipam.etcd.%s %q is set but the endpoints are not https", f.name, f.v)
			}
		}
		return nil
	}
	t, err := tlsConfig(ec)
	if err != nil {
		return err
	}
	c.Etcd.TLS = t
	return nil
}

// tlsConfig loads the CA and the client certificate of https endpoints.
func tlsConfig(ec *etcdConf) (*tls.Config, *types.Error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if ec.CAFile != "" {
		pem, err := os.ReadFile(ec.CAFile)
		if err != nil {
			return nil, invalid("ipam.etcd.caFile %q: %v", ec.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalid("ipam.etcd.caFile %q holds no PEM certificate", ec.CAFile)
		}
		t.RootCAs = pool
	}
	switch {
	case ec.CertFile == "" && ec.KeyFile == "":
	case ec.CertFile == "":
		return nil, invalid("ipam.etcd.keyFile %q is set without ipam.etcd.certFile", ec.KeyFile)
	case ec.KeyFile == "":
		return nil, invalid("ipam.etcd.certFile %q is set without ipam.etcd.keyFile", ec.CertFile)
	default:
		cert, err := tls.LoadX509KeyPair(ec.CertFile, ec.KeyFile)
		if err != nil {
			return nil, invalid("ipam.etcd.certFile %q and keyFile %q: %v", ec.CertFile, ec.KeyFile, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// parseBlockSize sets the block prefix length of every range set. The
// field is a prefix length of either family and stands for a number of
// addresses: 26 (64 addresses) gives IPv6 ranges /122 blocks, and 122
// gives IPv4 ranges /26.
func (c *Config) parseBlockSize(v *int) *types.Error {
	hostBits := -1
	if v != nil {
		switch {
		case *v >= 1 && *v <= 32:
			hostBits = 32 - *v
		case *v > 32 && *v <= 128:
			hostBits = 128 - *v
		default:
			return invalid("ipam.blockSize %d is not a prefix length (1 to 32 for IPv4, 33 to 128 for IPv6)", *v)
		}
		if hostBits > 24 {
			return invalid("ipam.blockSize %d gives blocks of 2^%d addresses: at most 2^24", *v, hostBits)
		}
	}
	for i, set := range c.RangeSets {
		bitLen := set[0].Subnet.Addr().BitLen()
		bits := DefaultBlockSize4
		if bitLen == 128 {
			bits = DefaultBlockSize6
		}
		if hostBits >= 0 {
			bits = bitLen - hostBits
		}
		for _, r := range set {
			if bits < r.Subnet.Bits() {
				return invalid("ipam.blockSize %s: blocks of /%d are larger than subnet %s of range set %d", blockSizeText(v), bits, r.Subnet, i)
			}
		}
		c.BlockBits = append(c.BlockBits, bits)
	}
	return nil
}

func blockSizeText(v *int) string {
	if v == nil {
		return "(default)"
	}
	return fmt.Sprint(*v)
}

// Timeout bounds a whole verb: the dial and every request after it.
func (c *Config) Timeout() time.Duration { return c.Etcd.DialTimeout }
