package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvslab/lvslab/scenarios"
)

// shards splits sample() into two shards of one suite, each result in the
// shard named by its index.
func shards() []*Summary {
	all := sample()
	var cells []string
	for _, r := range all.Results {
		r.Cell = cellName(r)
		cells = append(cells, r.Cell)
	}
	var out []*Summary
	for i, r := range all.Results {
		s := *all
		s.RunID = all.RunID + "-shard" + string(rune('1'+i)) + "of2"
		s.Shard, s.Host = string(rune('1'+i))+"/2", "runner-"+string(rune('a'+i))
		s.Kernel = "6.1.0-56-amd64"
		s.Cells = cells
		s.Results = []*scenarios.Result{r}
		out = append(out, &s)
	}
	return out
}

func TestMerge(t *testing.T) {
	m, err := Merge("merged", shards())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Results) != 2 || len(m.Cells) != 2 {
		t.Fatalf("merged %d results of %d cells, want 2 of 2", len(m.Results), len(m.Cells))
	}
	// Sorted by cell: failover-kill's before steady-state's.
	kill, steady := m.Results[0], m.Results[1]
	if kill.Scenario != scenarios.FailoverKill || kill.Shard != "2/2" || kill.Host != "runner-b" || kill.Kernel != "6.1.0-56-amd64" {
		t.Errorf("failover-kill cell: shard %q host %q kernel %q", kill.Shard, kill.Host, kill.Kernel)
	}
	if steady.Shard != "1/2" || steady.Host != "runner-a" {
		t.Errorf("steady cell: shard %q host %q", steady.Shard, steady.Host)
	}
	if m.Kernel != "6.1.0-56-amd64" || m.RunID != "merged" {
		t.Errorf("merged kernel %q run %q", m.Kernel, m.RunID)
	}
	// The merged page and JUnit name where each cell ran.
	run, err := m.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"index.html": "<td>shard 2/2 on runner-b, kernel 6.1.0-56-amd64</td>",
		"junit.xml":  "shard 2/2 on runner-b, kernel 6.1.0-56-amd64",
	} {
		if data, _ := os.ReadFile(filepath.Join(run, file)); !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %q", file, want)
		}
	}
}

// TestMergeKernels: a matrix of shards × kernels has each cell once per
// kernel; a kernel whose shards miss a cell fails the merge.
func TestMergeKernels(t *testing.T) {
	var all []*Summary
	for _, kernel := range []string{"6.1.0-56-amd64", "5.10.0-32-amd64"} {
		for _, s := range shards() {
			s.Kernel, s.RunID = kernel, s.RunID+"-"+kernel
			all = append(all, s)
		}
	}
	m, err := Merge("merged", all)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Results) != 4 || m.Kernel != "6.1.0-56-amd64, 5.10.0-32-amd64" || m.Results[0].Kernel != "5.10.0-32-amd64" {
		t.Errorf("merged %d results on %q, first on %q; want 4 on both kernels, sorted by cell then kernel",
			len(m.Results), m.Kernel, m.Results[0].Kernel)
	}
	if _, err := Merge("merged", all[:3]); err == nil || !strings.Contains(err.Error(), "on 5.10.0-32-amd64") {
		t.Errorf("Merge without 5.10's second shard: %v, want its cell named missing on 5.10.0-32-amd64", err)
	}
}

func TestMergeRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		shards func() []*Summary
		want   string
	}{
		"duplicate": {func() []*Summary { s := shards(); s[1].Results = append(s[1].Results, s[0].Results[0]); return s },
			"ran twice"},
		"missing": {func() []*Summary { return shards()[:1] }, "1 of 2 cells ran in no shard"},
		"other suite": {func() []*Summary { s := shards(); s[1].Cells = s[1].Cells[:1]; return s },
			"is of another suite"},
		"no cells":  {func() []*Summary { s := shards(); s[0].Cells = nil; return s }, "lists no cells"},
		"no shards": {func() []*Summary { return nil }, "no shards"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Merge("merged", tc.shards())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Merge: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
