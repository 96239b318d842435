package reports

import (
	"context"
	imagepng "image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab/labtest"

	"github.com/lvslab/lvslab/scenarios"
)

func sample() *Summary {
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	loop := &scenarios.Result{Scenario: scenarios.Steady, Implementation: "keepalived", Fix: scenarios.FixNone,
		Verdict: scenarios.Loop, Expected: scenarios.Loop, Pass: true, Reason: "passive d2's service counted 522 packets",
		Connections: 40, Served: 30, Hung: 3, Errors: 7, Capture: &scenarios.CaptureStats{Frames: 900, KernelDrops: 4},
		Timeline: []scenarios.Sample{{At: 100 * time.Millisecond, Client: 10, Directors: 80}, {At: 200 * time.Millisecond, Client: 5, Directors: 40}},
		// down from before the timeline to its middle
		TimelineStart: t0, Outages: []scenarios.Outage{{From: t0.Add(-time.Second), To: t0.Add(150 * time.Millisecond)}}}
	clean := &scenarios.Result{Scenario: scenarios.FailoverKill, Implementation: "keepalived", Fix: scenarios.FixFwmark,
		Verdict: scenarios.Clean, Expected: scenarios.Clean, Pass: true, Reason: "40 of 40 served",
		Connections: 40, Served: 40, Failover: 3600 * time.Millisecond, Capture: &scenarios.CaptureStats{Frames: 310}}
	return &Summary{RunID: "20261125-000000", Kernel: "6.1.0-56-amd64", Runner: "vm", Results: []*scenarios.Result{loop, clean},
		Findings:   []scenarios.Finding{{Title: "A graceful stop leaves nothing to loop on", Text: "CLEAN & without a fix."}},
		YourConfig: "Your configuration\n  d1: db1.conf <with include>"}
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
		"<td>30/40</td>", "<td>3.6s</td>", "0 to 0.0s of traffic",
		`900 frames, <strong>incomplete</strong>: 4 dropped by the kernel, 0 past the cap`, `<small class="capture">310 frames</small>`,
		`<polyline class="dir" points="0.0,0.0 360.0,60.0"/>`, // 80 is the peak, 40 half of it
		`<polyline class="cli" points="0.0,105.0 360.0,112.5"/>`,
		`<rect class="down" x="0.0" y="0" width="180.0" height="120"/>`,
		">25%</text>",        // (3 hung + 7 failed) / 40
		"every run is CLEAN", // a check report
		"<pre id=\"your-config\">Your configuration\n  d1: db1.conf &lt;with include&gt;</pre>",
		`<dt><strong>A graceful stop leaves nothing to loop on</strong></dt><dd>CLEAN &amp; without a fix.</dd>`,
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
	// A cell run K times shows its counts (lvslab run --repeat).
	s := sample()
	s.Results[1].Runs = map[scenarios.Verdict]int{scenarios.Clean: 9}
	b.Reset()
	s.Matrix(&b)
	if !strings.Contains(b.String(), "fwmark  CLEAN 9/9  CLEAN") {
		t.Errorf("matrix with counts:\n%s", b.String())
	}
}

// TestMatrixVisibleInChromium renders a report in headless Chromium and
// looks for the matrix in the screenshot: the PASS rows' green and the
// LOOP verdict's red must be on screen. The screenshot stays with the
// report.
func TestMatrixVisibleInChromium(t *testing.T) {
	if Chromium() == "" {
		labtest.Missing(t, "needs chromium (install chromium: make deps)")
	}
	dir := t.TempDir()
	run, err := sample().Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	png, err := Screenshot(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := imagepng.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	count := func(r0, g0, b0 uint32) int {
		n := 0
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				if r>>8 == r0 && g>>8 == g0 && b>>8 == b0 {
					n++
				}
			}
		}
		return n
	}
	// .PASS background #d9f2d9; the bar and LOOP text #c33 / #b00.
	if n := count(0xd9, 0xf2, 0xd9); n < 5000 {
		t.Errorf("PASS rows: %d green pixels in the screenshot, want the matrix rows (thousands)", n)
	}
	if n := count(0xcc, 0x33, 0x33); n < 100 {
		t.Errorf("hung-share bar: %d red pixels, want a visible bar", n)
	}
}

// A check's verdict on the pair says, per fix, which verdict came out in
// which events, and what it assumed.
func TestPairVerdict(t *testing.T) {
	r := func(fix scenarios.Fix, ev scenarios.Event, v scenarios.Verdict) *scenarios.Result {
		return &scenarios.Result{Fix: fix, Scenario: ev, Verdict: v}
	}
	s := &Summary{YourConfig: "Your configuration", Assumed: []string{"d1 address 192.168.1.233"}, Results: []*scenarios.Result{r("yours", scenarios.Steady, scenarios.Loop), r("yours", scenarios.FailoverStop, scenarios.Clean),
		r("yours", scenarios.FailoverKill, scenarios.Loop), r("prescribed", scenarios.Steady, scenarios.Clean), r("prescribed", scenarios.FailoverKill, scenarios.Clean)}}
	s.SetPairVerdict()
	want := "Your pair, as given: LOOP (steady-state, failover-kill), CLEAN (failover-stop); as prescribed: CLEAN in every run. " +
		"Assumed, as the configs do not say: d1 address 192.168.1.233 (see Mappings; --addr sets the boxes' addresses)."
	if s.PairVerdict != want {
		t.Errorf("got  %q\nwant %q", s.PairVerdict, want)
	}
	// No pair verdict for a run that is not a check's.
	run := &Summary{Results: s.Results}
	if run.SetPairVerdict(); run.PairVerdict != "" {
		t.Errorf("lvslab run's summary got a pair verdict: %q", run.PairVerdict)
	}
	s.Results[4].Verdict = scenarios.Loop
	s.SetPairVerdict()
	if !strings.Contains(s.PairVerdict, "as prescribed: CLEAN (steady-state), LOOP (failover-kill).") ||
		!strings.Contains(s.PairVerdict, "did not prove CLEAN") {
		t.Errorf("a fix that loops in its own run: %q", s.PairVerdict)
	}
}
