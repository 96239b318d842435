package reports

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/scenarios"
)

// Merge combines the summaries of a suite's shards, on one kernel or on
// several (a CI matrix of shards × kernels), into one summary: every cell
// of the suite exactly once per kernel, each result naming the shard, host
// and kernel it ran on. It fails on shards of different suites, on a cell
// no shard of a kernel ran and on a cell run twice on one kernel.
func Merge(runID string, shards []*Summary) (*Summary, error) {
	if len(shards) == 0 {
		return nil, errors.New("merge: no shards")
	}
	first := shards[0]
	if len(first.Cells) == 0 {
		return nil, fmt.Errorf("merge: %s lists no cells: not a conformance shard", first.RunID)
	}
	m := &Summary{RunID: runID, Started: first.Started, Runner: first.Runner, Cells: first.Cells, Findings: first.Findings}
	type key struct{ kernel, cell string }
	ranIn := map[key]string{}
	var kernels []string
	for _, s := range shards {
		if !slices.Equal(sorted(s.Cells), sorted(m.Cells)) {
			return nil, fmt.Errorf("merge: %s is of another suite: its %d cells differ from %s's %d", s.RunID, len(s.Cells), first.RunID, len(m.Cells))
		}
		if s.Started.Before(m.Started) {
			m.Started = s.Started
		}
		if !slices.Contains(kernels, s.Kernel) {
			kernels = append(kernels, s.Kernel)
		}
		for _, r := range s.Results {
			r.Shard, r.Host, r.Kernel = cmp.Or(r.Shard, s.Shard), cmp.Or(r.Host, s.Host), cmp.Or(r.Kernel, s.Kernel)
			k := key{r.Kernel, r.Cell}
			if prev, ok := ranIn[k]; ok {
				return nil, fmt.Errorf("merge: cell %q ran twice on kernel %s: in %s and in %s", r.Cell, r.Kernel, prev, s.RunID)
			}
			ranIn[k] = s.RunID
			m.Results = append(m.Results, r)
		}
	}
	var missing []string
	for _, kernel := range kernels {
		for _, c := range m.Cells {
			if _, ok := ranIn[key{kernel, c}]; !ok {
				missing = append(missing, fmt.Sprintf("%q on %s", c, kernel))
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("merge: %d of %d cells ran in no shard: %s", len(missing), len(m.Cells)*len(kernels), strings.Join(missing, ", "))
	}
	m.Kernel = strings.Join(kernels, ", ")
	slices.SortStableFunc(m.Results, func(a, b *scenarios.Result) int {
		return cmp.Or(cmp.Compare(a.Cell, b.Cell), cmp.Compare(a.Kernel, b.Kernel))
	})
	return m, nil
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// RunID is a run's name: its start as a UTC timestamp.
func RunID(t time.Time) string { return t.UTC().Format("20060102-150405") }
