package pluginexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

// fakePlugin writes an executable shell script plugin called name into a
// new directory, which becomes CNI_PATH for the test.
func fakePlugin(t *testing.T, name, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CNI_PATH", "/nonexistent"+string(os.PathListSeparator)+dir)
}

const conf = `{"cniVersion":"1.0.0","name":"n","type":"x"}`

func TestAdd(t *testing.T) {
	// The plugin echoes the verb it was given and the stdin it read.
	fakePlugin(t, "ipam", `read -r stdin
case "$stdin" in *'"name":"n"'*) ;; *) exit 9 ;; esac
echo '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1"}],"dns":{"domain":"'"$CNI_COMMAND"'"}}'`)
	t.Setenv("CNI_COMMAND", "CHECK") // the caller's own verb must not leak through
	r, err := Add(context.Background(), "ipam", []byte(conf+"\n"))
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{res.IPs[0].Address.String(), res.IPs[0].Gateway.String(), res.DNS.Domain}
	if diff := cmp.Diff([]string{"10.0.0.2/24", "10.0.0.1", "ADD"}, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
}

func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   string
		wantCode uint // 0: not a CNI error
		wantMsg  string
	}{
		{"cni error keeps its code", `echo '{"cniVersion":"1.0.0","code":11,"msg":"range set 0 has no free address"}'; exit 1`, 11, "range set 0 has no free address"},
		{"plain failure", `echo boom >&2; exit 3`, 0, "boom"},
		{"garbage on stdout", `echo 'not json'; exit 1`, 0, "not json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakePlugin(t, "ipam", tc.script)
			_, err := Run(context.Background(), "ipam", "DEL", []byte(conf))
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			var e *types.Error
			isCNI := errors.As(err, &e)
			if tc.wantCode != 0 && (!isCNI || e.Code != tc.wantCode) {
				t.Fatalf("error %v, want CNI code %d", err, tc.wantCode)
			}
			if tc.wantCode == 0 && isCNI {
				t.Fatalf("error %v is a CNI error, want a plain one", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
		})
	}
}

func TestFind(t *testing.T) {
	fakePlugin(t, "ipam", "exit 0")
	if _, err := Run(context.Background(), "missing", "DEL", []byte(conf)); err == nil || !strings.Contains(err.Error(), `plugin "missing" not found`) {
		t.Errorf("missing plugin: %v", err)
	}
	if _, err := Find("../ipam", os.Getenv("CNI_PATH")); err == nil {
		t.Error("Find accepted a path for a name")
	}
}

func TestSupports(t *testing.T) {
	fakePlugin(t, "ipam", `test "$CNI_COMMAND" = VERSION || exit 1
echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'`)
	for want, ok := range map[string]bool{"1.0.0": true, "1.1.0": false} {
		got, err := Supports(context.Background(), "ipam", want)
		if err != nil || got != ok {
			t.Errorf("Supports(%q) = %v, %v; want %v", want, got, err, ok)
		}
	}
}
