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

// Merge combines the summaries of a suite's shards into one summary with
// every cell of the suite exactly once, each result naming the shard, host
// and kernel it ran on. It fails on shards of different suites, on a cell
// no shard ran and on a cell run by two.
func Merge(runID string, shards []*Summary) (*Summary, error) {
	if len(shards) == 0 {
		return nil, errors.New("merge: no shards")
	}
	m := &Summary{RunID: runID, Started: shards[0].Started, Kernel: shards[0].Kernel, Runner: shards[0].Runner,
		Cells: shards[0].Cells, Findings: shards[0].Findings}
	if len(m.Cells) == 0 {
		return nil, fmt.Errorf("merge: shard %s (%s) lists no cells: not a conformance shard", shards[0].Shard, shards[0].RunID)
	}
	ranBy := map[string]string{}
	var kernels []string
	for _, s := range shards {
		if !slices.Equal(sorted(s.Cells), sorted(m.Cells)) {
			return nil, fmt.Errorf("merge: shard %s (%s) is of another suite: its %d cells differ from %s's %d", s.Shard, s.RunID, len(s.Cells), shards[0].RunID, len(m.Cells))
		}
		if s.Started.Before(m.Started) {
			m.Started = s.Started
		}
		if !slices.Contains(kernels, s.Kernel) {
			kernels = append(kernels, s.Kernel)
		}
		for _, r := range s.Results {
			if prev, ok := ranBy[r.Cell]; ok {
				return nil, fmt.Errorf("merge: cell %q ran twice: in %s and in %s", r.Cell, prev, s.RunID)
			}
			ranBy[r.Cell] = s.RunID
			r.Shard, r.Host, r.Kernel = cmp.Or(r.Shard, s.Shard), cmp.Or(r.Host, s.Host), cmp.Or(r.Kernel, s.Kernel)
			m.Results = append(m.Results, r)
		}
	}
	var missing []string
	for _, c := range m.Cells {
		if _, ok := ranBy[c]; !ok {
			missing = append(missing, fmt.Sprintf("%q", c))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("merge: %d of %d cells ran in no shard: %s", len(missing), len(m.Cells), strings.Join(missing, ", "))
	}
	m.Kernel = strings.Join(kernels, ", ")
	slices.SortStableFunc(m.Results, func(a, b *scenarios.Result) int { return cmp.Compare(a.Cell, b.Cell) })
	return m, nil
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// RunID is a run's name: its start as a UTC timestamp.
func RunID(t time.Time) string { return t.UTC().Format("20060102-150405") }
