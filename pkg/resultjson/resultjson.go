// Package resultjson encodes a CNI result as cni's PrintTo does, byte for
// byte, without encoding/json's reflection for the result types. A plugin
// is a fresh process per verb: cni's encoder marshals the result, decodes
// it into a map and marshals the map again (sorted keys, to drop an empty
// dns), and encoding/json builds each type's encoder on first use; in the
// VM that is several milliseconds of an ADD. Results of spec versions
// 1.0.0 and later are written here directly; older versions, which need
// cni's conversions, go through cni.
package resultjson

import (
	"bytes"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Encode returns r converted to version, as cni's PrintTo writes it: the
// object's keys sorted, indented by four spaces.
func Encode(r *current.Result, version string) ([]byte, error) {
	versioned, err := r.GetAsVersion(version)
	if err != nil {
		return nil, err
	}
	v, ok := versioned.(*current.Result)
	if !ok {
		var out bytes.Buffer
		err := versioned.PrintTo(&out)
		return out.Bytes(), err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact(v), "", "    "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// object writes a JSON object from its members, given in key order.
type object struct {
	b     []byte
	first bool
}

func newObject(b []byte) *object { return &object{b: append(b, '{'), first: true} }

func (o *object) key(k string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = appendString(o.b, k)
	o.b = append(o.b, ':')
}

func (o *object) str(k, v string, omitEmpty bool) {
	if v == "" && omitEmpty {
		return
	}
	o.key(k)
	o.b = appendString(o.b, v)
}

func (o *object) num(k string, v int, omitZero bool) {
	if v == 0 && omitZero {
		return
	}
	o.key(k)
	o.b = strconv.AppendInt(o.b, int64(v), 10)
}

func (o *object) ptr(k string, v *int) {
	if v != nil {
		o.num(k, *v, false)
	}
}

func (o *object) ip(k string, v net.IP) {
	if len(v) > 0 {
		o.str(k, v.String(), false)
	}
}

func (o *object) strs(k string, v []string) { array(o, k, v, appendString) }

func (o *object) end() []byte { return append(o.b, '}') }

// array writes a member whose value is the list v, each element by enc;
// nothing when v is empty, as omitempty does.
func array[T any](o *object, k string, v []T, enc func([]byte, T) []byte) {
	if len(v) == 0 {
		return
	}
	o.key(k)
	o.b = append(o.b, '[')
	for i, e := range v {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = enc(o.b, e)
	}
	o.b = append(o.b, ']')
}

// list writes a member whose value is a list of objects, null for a nil
// element, as encoding/json writes a nil pointer.
func list[T any](o *object, k string, v []*T, enc func([]byte, *T) []byte) {
	array(o, k, v, func(b []byte, e *T) []byte {
		if e == nil {
			return append(b, "null"...)
		}
		return enc(b, e)
	})
}

// compact is r's JSON without indentation, every object's keys sorted:
// what cni's Result.MarshalJSON returns.
func compact(r *current.Result) []byte {
	o := newObject(nil)
	o.str("cniVersion", r.CNIVersion, true)
	if !r.DNS.IsEmpty() {
		o.key("dns")
		d := newObject(o.b)
		d.str("domain", r.DNS.Domain, true)
		d.strs("nameservers", r.DNS.Nameservers)
		d.strs("options", r.DNS.Options)
		d.strs("search", r.DNS.Search)
		o.b = d.end()
	}
	list(o, "interfaces", r.Interfaces, func(b []byte, i *current.Interface) []byte {
		e := newObject(b)
		e.str("mac", i.Mac, true)
		e.num("mtu", i.Mtu, true)
		e.str("name", i.Name, false)
		e.str("pciID", i.PciID, true)
		e.str("sandbox", i.Sandbox, true)
		e.str("socketPath", i.SocketPath, true)
		return e.end()
	})
	list(o, "ips", r.IPs, func(b []byte, ip *current.IPConfig) []byte {
		e := newObject(b)
		e.str("address", (&ip.Address).String(), false)
		e.ip("gateway", ip.Gateway)
		e.ptr("interface", ip.Interface)
		return e.end()
	})
	list(o, "routes", r.Routes, func(b []byte, rt *types.Route) []byte {
		e := newObject(b)
		e.num("advmss", rt.AdvMSS, true)
		e.str("dst", (&rt.Dst).String(), false)
		e.ip("gw", rt.GW)
		e.num("mtu", rt.MTU, true)
		e.num("priority", rt.Priority, true)
		e.ptr("scope", rt.Scope)
		e.ptr("table", rt.Table)
		return e.end()
	})
	return o.end()
}

// appendString appends s as cni's encoding leaves it: HTML characters,
// U+2028 and U+2029 escaped, as encoding/json writes a string; invalid
// UTF-8 as U+FFFD itself, as its decoding and second encoding leave it.
func appendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		var valid strings.Builder
		for _, r := range s { // an invalid byte is one RuneError
			valid.WriteRune(r)
		}
		s = valid.String()
	}
	q, _ := json.Marshal(s) // no reflection for a string
	return append(b, q...)
}
