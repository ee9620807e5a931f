// Command testsum reads `go test -json` on stdin, prints the tests' output
// as `go test -v` would, and ends with one line counting the tests (sub-tests
// included) that passed, failed and were skipped:
//
//	go test -json ./... | testsum -label unit -record .cache/test-counts
//	testsum -total .cache/test-counts
//
// It exits 1 when a test or a package failed (a build error, a crashed test
// binary, a VM that gave no verdict), when no test ran at all, and with
// -no-skip when any test was skipped: in the VM every test must run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type counts struct{ passed, failed, skipped int }

func (c counts) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", c.passed, c.failed, c.skipped)
}

func main() {
	label := flag.String("label", "tests", "word printed before the counts")
	record := flag.String("record", "", "append the counts to this file")
	noSkip := flag.Bool("no-skip", false, "fail when any test was skipped")
	total := flag.String("total", "", "print the sum of the counts recorded in this file and exit")
	flag.Parse()
	if *total != "" {
		os.Exit(printTotal(*total))
	}
	os.Exit(summarize(os.Stdin, os.Stdout, *label, *record, *noSkip))
}

func summarize(r io.Reader, w io.Writer, label, record string, noSkip bool) int {
	var c counts
	var failedPkgs, skipped []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// go test prints build errors as plain text.
			fmt.Fprintln(w, sc.Text())
			continue
		}
		switch e.Action {
		case "output":
			fmt.Fprint(w, e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "fail" {
					failedPkgs = append(failedPkgs, e.Package)
				}
				continue
			}
			switch e.Action {
			case "pass":
				c.passed++
			case "fail":
				c.failed++
			case "skip":
				c.skipped++
				skipped = append(skipped, e.Package+"."+e.Test)
			}
		}
	}
	status := 0
	if len(failedPkgs) > 0 {
		sort.Strings(failedPkgs)
		fmt.Fprintf(w, "%s: packages failed: %s\n", label, strings.Join(failedPkgs, " "))
		status = 1
	}
	if c.failed > 0 {
		status = 1
	}
	if c.passed+c.failed == 0 {
		fmt.Fprintf(w, "%s: no test ran\n", label)
		status = 1
	}
	if noSkip && c.skipped > 0 {
		fmt.Fprintf(w, "%s: skipped, which is not allowed here: %s\n", label, strings.Join(skipped, " "))
		status = 1
	}
	if record != "" {
		if f, err := os.OpenFile(record, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(f, "%d %d %d %d\n", c.passed, c.failed, c.skipped, status)
			f.Close()
		}
	}
	fmt.Fprintf(w, "%s: %s\n", label, c)
	return status
}

func printTotal(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		return 1
	}
	var sum counts
	status := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var c counts
		var s int
		if _, err := fmt.Sscan(line, &c.passed, &c.failed, &c.skipped, &s); err != nil {
			fmt.Fprintf(os.Stderr, "testsum: bad line %q in %s\n", line, path)
			return 1
		}
		sum.passed += c.passed
		sum.failed += c.failed
		sum.skipped += c.skipped
		status |= s
	}
	fmt.Printf("total: %s\n", sum)
	return status
}
