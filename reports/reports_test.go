package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/scenarios"
)

func sample() *Summary {
	loop := &scenarios.Result{Scenario: scenarios.Steady, Implementation: "keepalived", Fix: scenarios.FixNone,
		Verdict: scenarios.Loop, Expected: scenarios.Loop, Pass: true, Reason: "passive d2's service counted 522 packets",
		Connections: 40, Served: 30, Hung: 3, Errors: 7,
		Timeline: []scenarios.Sample{{At: 100 * time.Millisecond, Client: 10, Directors: 80}, {At: 200 * time.Millisecond, Client: 5, Directors: 40}}}
	clean := &scenarios.Result{Scenario: scenarios.FailoverKill, Implementation: "keepalived", Fix: scenarios.FixFwmark,
		Verdict: scenarios.Clean, Expected: scenarios.Clean, Pass: true, Reason: "40 of 40 served",
		Connections: 40, Served: 40, Failover: 3600 * time.Millisecond}
	return &Summary{RunID: "20261125-000000", Kernel: "6.1.0-56-amd64", Runner: "vm", Results: []*scenarios.Result{loop, clean}}
}

func TestWriteAndRender(t *testing.T) {
	dir := t.TempDir()
	run, err := sample().Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "latest")); target != "20261125-000000" {
		t.Errorf("latest -> %q, want the run id", target)
	}
	page, err := os.ReadFile(filepath.Join(run, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, want := range []string{
		`id="matrix"`, `<tr class="PASS">`, `<td class="LOOP">LOOP</td>`, `<td class="CLEAN">CLEAN</td>`,
		"<td>30/40</td>", "<td>3.6s</td>",
		`<polyline class="dir" points="0.0,0.0 360.0,60.0"/>`, // 80 is the peak, 40 half of it
		`<polyline class="cli" points="0.0,105.0 360.0,112.5"/>`,
		">25%</text>", // (3 hung + 7 failed) / 40
		"every verdict matches its expectation",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	// Re-rendering from summary.json alone gives the same page.
	os.Remove(filepath.Join(run, "index.html"))
	if err := Render(run); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(run, "index.html"))
	if string(again) != html {
		t.Errorf("Render from summary.json differs from the page Write made")
	}
}

func TestMatrix(t *testing.T) {
	var b strings.Builder
	sample().Matrix(&b)
	if !strings.Contains(b.String(), "failover-kill  keepalived      fwmark  CLEAN    CLEAN     PASS    40/40   0     3.6s") {
		t.Errorf("matrix:\n%s", b.String())
	}
}
