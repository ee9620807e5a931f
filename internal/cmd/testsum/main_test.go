package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		input    string
		noSkip   bool
		wantCode int
		wantLast string
	}{
		{
			name: "pass and skip",
			input: `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}`,
			wantLast: "unit: 1 passed, 0 failed, 1 skipped",
		},
		{
			name: "skip not allowed",
			input: `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"skip","Package":"p","Test":"TestB"}`,
			noSkip:   true,
			wantCode: 1,
			wantLast: "unit: 1 passed, 0 failed, 1 skipped",
		},
		{
			name: "failed test",
			input: `{"Action":"fail","Package":"p","Test":"TestA/sub"}
{"Action":"fail","Package":"p","Test":"TestA"}`,
			wantCode: 1,
			wantLast: "unit: 0 passed, 2 failed, 0 skipped",
		},
		{
			name: "package failed without a failing test",
			input: `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"fail","Package":"p"}`,
			wantCode: 1,
			wantLast: "unit: 1 passed, 0 failed, 0 skipped",
		},
		{
			name:     "nothing ran",
			input:    `{"Action":"skip","Package":"p"}`,
			wantCode: 1,
			wantLast: "unit: 0 passed, 0 failed, 0 skipped",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := summarize(strings.NewReader(tc.input), &out, "unit", "", tc.noSkip)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if got := lines[len(lines)-1]; got != tc.wantLast {
				t.Errorf("last line = %q, want %q", got, tc.wantLast)
			}
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", code, tc.wantCode)
			}
		})
	}
}
