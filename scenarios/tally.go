package scenarios

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Tally combines K runs of one cell into one result: the first run's
// evidence, and in Runs how often each verdict came out. Runs that agree
// keep their verdict, and pass if every run passed. Runs that disagree
// are UNSTABLE and fail, with the first reason seen for each outcome: a
// flake is counted and shown, never retried away. Only where the judge
// accepts two verdicts (clientsMayStay) can runs that disagree each pass:
// then the tally passes, with both outcomes and their reasons.
func Tally(runs []*Result) *Result {
	t := *runs[0]
	t.Runs, t.RunReasons = map[Verdict]int{}, map[Verdict]string{}
	for _, r := range runs {
		t.Runs[r.Verdict]++
		if _, ok := t.RunReasons[r.Verdict]; !ok {
			t.RunReasons[r.Verdict] = r.Reason
		}
		t.Pass = t.Pass && r.Pass
	}
	if len(t.Runs) == 1 {
		return &t
	}
	if !t.Pass {
		t.Verdict = Unstable
	}
	var why []string
	for _, v := range slices.Sorted(maps.Keys(t.Runs)) {
		why = append(why, fmt.Sprintf("%s in %d of %d runs: %s", v, t.Runs[v], len(runs), t.RunReasons[v]))
	}
	t.Reason = strings.Join(why, " | ")
	return &t
}

// Counts is how a tallied result's verdicts read, e.g. "LOOP 9/9" or
// "CLEAN 3/5, LOOP 2/5"; "" for a single run.
func (r *Result) Counts() string {
	total := 0
	for _, n := range r.Runs {
		total += n
	}
	var out []string
	for _, v := range slices.Sorted(maps.Keys(r.Runs)) {
		out = append(out, fmt.Sprintf("%s %d/%d", v, r.Runs[v], total))
	}
	return strings.Join(out, ", ")
}

// VerdictText is the verdict as reports show it: with its counts when the
// cell ran several times ("LOOP 9/9", "UNSTABLE (CLEAN 1/3, LOOP 2/3)").
func (r *Result) VerdictText() string {
	switch c := r.Counts(); {
	case c == "":
		return string(r.Verdict)
	case r.Verdict == Unstable:
		return fmt.Sprintf("%s (%s)", r.Verdict, c)
	default:
		return c
	}
}
