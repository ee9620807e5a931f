package etcdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The messages of etcd's v3 KV service that this package sends and reads,
// and their protobuf encoding. Field numbers are those of etcd's
// etcdserverpb/rpc.proto and mvccpb/kv.proto (api/v3, unchanged since
// 3.3, which added nested transactions); only the fields used here are
// written or read, and any other field of an answer is skipped.

type keyValue struct {
	Key            []byte // 1
	CreateRevision int64  // 2
	ModRevision    int64  // 3
	Value          []byte // 5
}

type rangeRequest struct {
	Key          []byte // 1
	RangeEnd     []byte // 2
	Serializable bool   // 7
	KeysOnly     bool   // 8
	CountOnly    bool   // 9
}

type rangeResponse struct {
	Kvs   []keyValue // 2
	Count int64      // 4
}

type putRequest struct {
	Key   []byte // 1
	Value []byte // 2
}

type deleteRequest struct {
	Key      []byte // 1
	RangeEnd []byte // 2
}

// op is a RequestOp: exactly one field set.
type op struct {
	Range  *rangeRequest  // 1
	Put    *putRequest    // 2
	Delete *deleteRequest // 3
	Txn    *txnRequest    // 4
}

// Compare.CompareResult and Compare.CompareTarget.
const (
	equal   = 0
	greater = 1

	targetCreate = 1
	targetMod    = 2
	targetValue  = 3
)

// compare is a Compare. Revision is the create or mod revision compared,
// by Target; Value the value.
type compare struct {
	Result   int    // 1
	Target   int    // 2
	Key      []byte // 3
	Revision int64  // 5 (create) or 6 (mod), of the oneof target_union
	Value    []byte // 7, of the oneof
	RangeEnd []byte // 64
}

type txnRequest struct {
	Compare []compare // 1
	Success []op      // 2
	Failure []op      // 3
}

// opResponse is a ResponseOp: the range or transaction answer, when it
// is one (puts and deletes answer nothing read here).
type opResponse struct {
	Range *rangeResponse // 1
	Txn   *txnResponse   // 4
}

type txnResponse struct {
	Succeeded bool         // 2
	Responses []opResponse // 3
}

// prefixEnd returns the end of the key range of every key with prefix p.
func prefixEnd(p string) []byte {
	end := []byte(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func getPrefix(p string, keysOnly, serializable bool) op {
	return op{Range: &rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), KeysOnly: keysOnly, Serializable: serializable}}
}

func put(k, v string) op { return op{Put: &putRequest{Key: []byte(k), Value: []byte(v)}} }

func del(k string) op { return op{Delete: &deleteRequest{Key: []byte(k)}} }

func delPrefix(p string) op {
	return op{Delete: &deleteRequest{Key: []byte(p), RangeEnd: prefixEnd(p)}}
}

// absent holds while key does not exist.
func absent(k string) compare {
	return compare{Result: equal, Target: targetCreate, Key: []byte(k)}
}

// present holds while key exists.
func present(k string) compare {
	return compare{Result: greater, Target: targetCreate, Key: []byte(k)}
}

// noneUnder holds while no key starts with p: a compare over a range
// holds when every key in it does, and when there is none.
func noneUnder(p string) compare {
	c := absent(p)
	c.RangeEnd = prefixEnd(p)
	return c
}

func valueIs(k, v string) compare {
	return compare{Result: equal, Target: targetValue, Key: []byte(k), Value: []byte(v)}
}

func modIs(k string, r int64) compare {
	return compare{Result: equal, Target: targetMod, Key: []byte(k), Revision: r}
}

// Wire types.
const (
	wireVarint = 0
	wireI64    = 1
	wireLen    = 2
	wireI32    = 5
)

func appendTag(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wire))
}

// appendInt appends an int64 field; proto3 leaves out a zero unless the
// field is of a oneof (always).
func appendInt(b []byte, field int, v int64, always bool) []byte {
	if v == 0 && !always {
		return b
	}
	return binary.AppendUvarint(appendTag(b, field, wireVarint), uint64(v))
}

func appendBool(b []byte, field int, v bool) []byte {
	if !v {
		return b
	}
	return append(appendTag(b, field, wireVarint), 1)
}

func appendBytes(b []byte, field int, v []byte, always bool) []byte {
	if len(v) == 0 && !always {
		return b
	}
	b = binary.AppendUvarint(appendTag(b, field, wireLen), uint64(len(v)))
	return append(b, v...)
}

// appendMessage appends the message enc writes as field.
func appendMessage(b []byte, field int, enc func([]byte) []byte) []byte {
	return appendBytes(b, field, enc(nil), true)
}

func (r *rangeRequest) appendTo(b []byte) []byte {
	b = appendBytes(b, 1, r.Key, false)
	b = appendBytes(b, 2, r.RangeEnd, false)
	b = appendBool(b, 7, r.Serializable)
	b = appendBool(b, 8, r.KeysOnly)
	return appendBool(b, 9, r.CountOnly)
}

func (p *putRequest) appendTo(b []byte) []byte {
	return appendBytes(appendBytes(b, 1, p.Key, false), 2, p.Value, false)
}

func (d *deleteRequest) appendTo(b []byte) []byte {
	return appendBytes(appendBytes(b, 1, d.Key, false), 2, d.RangeEnd, false)
}

func (o *op) appendTo(b []byte) []byte {
	switch {
	case o.Range != nil:
		return appendMessage(b, 1, o.Range.appendTo)
	case o.Put != nil:
		return appendMessage(b, 2, o.Put.appendTo)
	case o.Delete != nil:
		return appendMessage(b, 3, o.Delete.appendTo)
	case o.Txn != nil:
		return appendMessage(b, 4, o.Txn.appendTo)
	}
	return b
}

func (c *compare) appendTo(b []byte) []byte {
	b = appendInt(b, 1, int64(c.Result), false)
	b = appendInt(b, 2, int64(c.Target), false)
	b = appendBytes(b, 3, c.Key, false)
	switch c.Target {
	case targetCreate:
		b = appendInt(b, 5, c.Revision, true)
	case targetMod:
		b = appendInt(b, 6, c.Revision, true)
	case targetValue:
		b = appendBytes(b, 7, c.Value, true)
	}
	return appendBytes(b, 64, c.RangeEnd, false)
}

func (t *txnRequest) appendTo(b []byte) []byte {
	for i := range t.Compare {
		b = appendMessage(b, 1, t.Compare[i].appendTo)
	}
	for i := range t.Success {
		b = appendMessage(b, 2, t.Success[i].appendTo)
	}
	for i := range t.Failure {
		b = appendMessage(b, 3, t.Failure[i].appendTo)
	}
	return b
}

// fields calls fn with each field of message m: its number, and its value
// as a varint (wire type 0) or bytes (wire type 2); fixed-size fields are
// skipped.
func fields(m []byte, fn func(field int, v uint64, b []byte) error) error {
	for len(m) > 0 {
		tag, n := binary.Uvarint(m)
		if n <= 0 {
			return errors.New("protobuf: bad tag")
		}
		m = m[n:]
		field, wire := int(tag>>3), int(tag&7)
		var v uint64
		var b []byte
		switch wire {
		case wireVarint:
			if v, n = binary.Uvarint(m); n <= 0 {
				return fmt.Errorf("protobuf: bad varint of field %d", field)
			}
			m = m[n:]
		case wireLen:
			l, n := binary.Uvarint(m)
			if n <= 0 || l > uint64(len(m)-n) {
				return fmt.Errorf("protobuf: bad length of field %d", field)
			}
			b, m = m[n:n+int(l)], m[n+int(l):]
		case wireI64, wireI32:
			size := 8
			if wire == wireI32 {
				size = 4
			}
			if len(m) < size {
				return fmt.Errorf("protobuf: short field %d", field)
			}
			m = m[size:]
			continue
		default:
			return fmt.Errorf("protobuf: wire type %d of field %d", wire, field)
		}
		if err := fn(field, v, b); err != nil {
			return err
		}
	}
	return nil
}

func (kv *keyValue) decode(m []byte) error {
	return fields(m, func(f int, v uint64, b []byte) error {
		switch f {
		case 1:
			kv.Key = b
		case 2:
			kv.CreateRevision = int64(v)
		case 3:
			kv.ModRevision = int64(v)
		case 5:
			kv.Value = b
		}
		return nil
	})
}

func (r *rangeResponse) decode(m []byte) error {
	return fields(m, func(f int, v uint64, b []byte) error {
		switch f {
		case 2:
			var kv keyValue
			if err := kv.decode(b); err != nil {
				return err
			}
			r.Kvs = append(r.Kvs, kv)
		case 4:
			r.Count = int64(v)
		}
		return nil
	})
}

func (o *opResponse) decode(m []byte) error {
	return fields(m, func(f int, _ uint64, b []byte) error {
		switch f {
		case 1:
			o.Range = &rangeResponse{}
			return o.Range.decode(b)
		case 4:
			o.Txn = &txnResponse{}
			return o.Txn.decode(b)
		}
		return nil
	})
}

func (t *txnResponse) decode(m []byte) error {
	return fields(m, func(f int, v uint64, b []byte) error {
		switch f {
		case 2:
			t.Succeeded = v != 0
		case 3:
			var o opResponse
			if err := o.decode(b); err != nil {
				return err
			}
			t.Responses = append(t.Responses, o)
		}
		return nil
	})
}
