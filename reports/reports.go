// Package reports is the model of a conformance run and its writers: the
// summary.json that CI and `lvslab report` read, a self-contained
// index.html (matrix and inline SVG charts), and a compact text matrix.
// Generated runs go to reports/<run-id>/ (git-ignored), with reports/latest
// pointing at the newest.
package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lvslab/lvslab/scenarios"
)

// Summary is one run of scenarios.
type Summary struct {
	RunID   string    `json:"run_id"`
	Started time.Time `json:"started"`
	// Kernel is the kernel the scenarios ran on; Runner native or vm.
	Kernel  string              `json:"kernel"`
	Runner  string              `json:"runner"`
	Results []*scenarios.Result `json:"results"`
	// Shard is "i/N" when this run was one shard of a suite, Host the
	// machine (a CI runner) it ran on. Cells names every cell of the
	// suite, run here or in another shard: a merge needs each exactly once.
	Shard string   `json:"shard,omitempty"`
	Host  string   `json:"host,omitempty"`
	Cells []string `json:"cells,omitempty"`
	// Findings are the expectations investigated, as known at the run.
	Findings []scenarios.Finding `json:"findings,omitempty"`
	// YourConfig is lvslab check's account of a user's pair: what was
	// parsed, the lab derived, the mappings, the fix written.
	YourConfig string `json:"your_configuration,omitempty"`
	// Assumed is what lvslab check's verdicts rest on that the configs do
	// not say; PairVerdict its verdict on the pair in one line, with them
	// (Summary.SetPairVerdict).
	Assumed     []string `json:"assumed,omitempty"`
	PairVerdict string   `json:"pair_verdict,omitempty"`
}

// SetPairVerdict states the verdict on a user's pair (a summary with
// YourConfig) from its results: per fix (yours, prescribed), each verdict
// with the events it came out in; and the assumptions it rests on.
func (s *Summary) SetPairVerdict() {
	if s.YourConfig == "" {
		return
	}
	var parts []string
	for _, f := range []struct{ fix, as string }{{"yours", "as given"}, {"prescribed", "as prescribed"}} {
		events := map[scenarios.Verdict][]string{}
		var order []scenarios.Verdict
		for _, r := range s.Results {
			if string(r.Fix) != f.fix {
				continue
			}
			if events[r.Verdict] == nil {
				order = append(order, r.Verdict)
			}
			if !slices.Contains(events[r.Verdict], string(r.Scenario)) {
				events[r.Verdict] = append(events[r.Verdict], string(r.Scenario))
			}
		}
		var vs []string
		for _, v := range order {
			if len(order) == 1 {
				vs = append(vs, fmt.Sprintf("%s in every run", v))
			} else {
				vs = append(vs, fmt.Sprintf("%s (%s)", v, strings.Join(events[v], ", ")))
			}
		}
		if len(vs) > 0 {
			parts = append(parts, f.as+": "+strings.Join(vs, ", "))
		}
	}
	s.PairVerdict = "Your pair, " + strings.Join(parts, "; ") + "."
	if slices.ContainsFunc(s.Results, func(r *scenarios.Result) bool { return r.Fix == "prescribed" && r.Verdict != scenarios.Clean }) {
		s.PairVerdict += " The fix written above did not prove CLEAN in its own runs: it is not the fix for this pair as it stands (see the matrix)."
	}
	if len(s.Assumed) > 0 {
		s.PairVerdict += " Assumed, as the configs do not say: " + strings.Join(s.Assumed, "; ") + " (see Mappings; --addr sets the boxes' addresses)."
	}
}

// Pass reports whether every verdict matched its expectation.
func (s *Summary) Pass() bool {
	for _, r := range s.Results {
		if !r.Pass {
			return false
		}
	}
	return len(s.Results) > 0
}

// Write stores summary.json and index.html in dir/<run-id>/ and points
// dir/latest at it.
func (s *Summary) Write(dir string) (string, error) {
	run := filepath.Join(dir, s.RunID)
	if err := os.MkdirAll(run, 0o755); err != nil {
		return "", fmt.Errorf("create report dir: %w", err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(run, "summary.json"), data, 0o644); err != nil {
		return "", fmt.Errorf("write summary: %w", err)
	}
	if err := Render(run); err != nil {
		return "", err
	}
	if err := s.writeJUnit(filepath.Join(run, "junit.xml")); err != nil {
		return "", err
	}
	latest := filepath.Join(dir, "latest")
	os.Remove(latest)
	if err := os.Symlink(s.RunID, latest); err != nil {
		return "", fmt.Errorf("link %s: %w", latest, err)
	}
	return run, nil
}

// Matrix prints one line per scenario: implementation, fix, verdict,
// expectation, evidence.
func (s *Summary) Matrix(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// A merged run names each cell's kernel: a column of its own.
	kernels := slices.ContainsFunc(s.Results, func(r *scenarios.Result) bool { return r.Kernel != "" })
	head := "SCENARIO\tIMPLEMENTATION\tFIX\tVERDICT\tEXPECTED\tRESULT\tSERVED\tHUNG\tFAILOVER\tEVIDENCE\n"
	services := slices.ContainsFunc(s.Results, func(r *scenarios.Result) bool { return r.Service != "" })
	if services {
		head = "SERVICE\t" + head
	}
	if kernels {
		head = "KERNEL\t" + head
	}
	fmt.Fprint(tw, head)
	for _, r := range s.Results {
		res := "PASS"
		if !r.Pass {
			res = "FAIL"
		}
		failover := "-"
		if r.Failover > 0 {
			failover = fmt.Sprintf("%.1fs", r.Failover.Seconds())
		}
		if kernels {
			fmt.Fprintf(tw, "%s\t", r.Kernel)
		}
		if services {
			fmt.Fprintf(tw, "%s\t", r.Service)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\n", r.Scenario, r.Implementation, r.Fix,
			r.VerdictText(), r.Expected, res, r.Served, r.Connections, r.Hung, failover, r.Reason)
	}
	tw.Flush()
}
