package etcdstore

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestRequestsDecodeAsEtcds: every kind of request this package sends,
// decoded by etcd's own generated code, is the request meant.
func TestRequestsDecodeAsEtcds(t *testing.T) {
	mine := txnRequest{
		Compare: []compare{noneUnder("o/"), absent("a"), present("b"), valueIs("c", "v"), modIs("d", 42)},
		Success: []op{
			put("k", "v"),
			del("k2"),
			delPrefix("p/"),
			getPrefix("r/", true, true),
			{Range: &rangeRequest{Key: []byte("n"), CountOnly: true}},
			{Txn: &txnRequest{Compare: []compare{absent("x")}, Success: []op{put("x", "1")}, Failure: []op{put("y", "2")}}},
		},
	}
	var got pb.TxnRequest
	if err := got.Unmarshal(mine.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	want := pb.TxnRequest{
		Compare: []*pb.Compare{
			{Result: pb.Compare_EQUAL, Target: pb.Compare_CREATE, Key: []byte("o/"), RangeEnd: []byte("o0"), TargetUnion: &pb.Compare_CreateRevision{}},
			{Result: pb.Compare_EQUAL, Target: pb.Compare_CREATE, Key: []byte("a"), TargetUnion: &pb.Compare_CreateRevision{}},
			{Result: pb.Compare_GREATER, Target: pb.Compare_CREATE, Key: []byte("b"), TargetUnion: &pb.Compare_CreateRevision{}},
			{Result: pb.Compare_EQUAL, Target: pb.Compare_VALUE, Key: []byte("c"), TargetUnion: &pb.Compare_Value{Value: []byte("v")}},
			{Result: pb.Compare_EQUAL, Target: pb.Compare_MOD, Key: []byte("d"), TargetUnion: &pb.Compare_ModRevision{ModRevision: 42}},
		},
		Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}},
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k2")}}},
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("p/"), RangeEnd: []byte("p0")}}},
			{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("r/"), RangeEnd: []byte("r0"), KeysOnly: true, Serializable: true}}},
			{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("n"), CountOnly: true}}},
			{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Compare: []*pb.Compare{{Result: pb.Compare_EQUAL, Target: pb.Compare_CREATE, Key: []byte("x"), TargetUnion: &pb.Compare_CreateRevision{}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("x"), Value: []byte("1")}}}},
				Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("y"), Value: []byte("2")}}}},
			}}},
		},
	}
	if got.String() != want.String() {
		t.Errorf("etcd decodes the request as\n%v\nwant\n%v", got.String(), want.String())
	}
}

// TestAnswersDecodeAsEtcds: etcd's own encoding of the answers this
// package reads decodes to the same values, the fields not read skipped.
func TestAnswersDecodeAsEtcds(t *testing.T) {
	header := &pb.ResponseHeader{ClusterId: 7, MemberId: 8, Revision: 1 << 40, RaftTerm: 3}
	kvs := []*mvccpb.KeyValue{
		{Key: []byte("a"), CreateRevision: 5, ModRevision: 1 << 33, Version: 2, Value: []byte("va"), Lease: 9},
		{Key: []byte("b")},
	}
	etcds := &pb.TxnResponse{Header: header, Succeeded: true, Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: header, Kvs: kvs, More: true, Count: 2}}},
		{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: header}}},
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: header, Succeeded: false, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: header, Deleted: 1}}},
		}}}},
	}}
	b, err := etcds.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var got txnResponse
	if err := got.decode(b); err != nil {
		t.Fatal(err)
	}
	want := txnResponse{Succeeded: true, Responses: []opResponse{
		{Range: &rangeResponse{Count: 2, Kvs: []keyValue{
			{Key: []byte("a"), CreateRevision: 5, ModRevision: 1 << 33, Value: []byte("va")},
			{Key: []byte("b")},
		}}},
		{},
		{Txn: &txnResponse{Responses: []opResponse{{}}}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded answer (-want +got):\n%s", diff)
	}
	// Cut inside the last field (a length-delimited one): an error, not
	// a shorter answer.
	if err := new(txnResponse).decode(b[:len(b)-1]); err == nil {
		t.Errorf("a truncated answer decoded without error")
	}
}
