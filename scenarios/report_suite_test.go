package scenarios_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab/runenv"

	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/reports"
	"github.com/lvslab/lvslab/scenarios"
	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
)

// Flags of the conformance suite (after `--` on a ginkgo command line).
var (
	reportDir = flag.String("lvslab.reports", "", "write the suite's summary.json, junit.xml and index.html into DIR/<run-id>/")
	runID     = flag.String("lvslab.run-id", "", "the run's name under -lvslab.reports (default: the start time, and the shard)")
	shardFlag = flag.String("lvslab.shard", "", "run only shard I of N (\"I/N\", 1-based): a stable partition of the specs by their text")
	repeat    = flag.Int("lvslab.repeat", 1, "run each spec's cell K times and count its verdicts; runs that disagree are UNSTABLE and fail")
)

// shard is the -lvslab.shard partition: spec i of N by an FNV hash of its
// full text, so a spec stays in its shard when others are added.
type shard struct{ i, n uint32 }

func parseShard(s string) (shard, error) {
	if s == "" {
		return shard{1, 1}, nil
	}
	var sh shard
	if _, err := fmt.Sscanf(s, "%d/%d", &sh.i, &sh.n); err != nil || sh.n == 0 || sh.i < 1 || sh.i > sh.n {
		return sh, fmt.Errorf("-lvslab.shard %q: want I/N with 1 <= I <= N", s)
	}
	return sh, nil
}

func (sh shard) has(text string) bool {
	h := fnv.New32a()
	h.Write([]byte(text))
	return h.Sum32()%sh.n == sh.i-1
}

func (sh shard) String() string {
	if sh.n <= 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d", sh.i, sh.n)
}

var suiteStart = time.Now()

// inShard skips the specs of other shards.
func inShard() {
	sh, err := parseShard(*shardFlag)
	if err != nil {
		Fail(err.Error())
	}
	if !sh.has(CurrentSpecReport().FullText()) {
		Skip("in another shard than " + sh.String())
	}
}

// record puts a spec's result into Ginkgo's report: an entry carries it as
// JSON from any parallel process to the report of the whole suite.
func record(r *scenarios.Result) {
	r.Cell = CurrentSpecReport().FullText()
	AddReportEntry(resultEntry, r, ReportEntryVisibilityNever)
}

const resultEntry = "lvslab result"

// specResult is the result a spec recorded; for a spec that failed before
// it had a verdict, an ERROR result with Ginkgo's failure; nil for a spec
// that did not run here (another shard's).
func specResult(spec types.SpecReport) *scenarios.Result {
	for _, e := range spec.ReportEntries {
		if e.Name != resultEntry {
			continue
		}
		data, _ := json.Marshal(e.GetRawValue())
		var r scenarios.Result
		if err := json.Unmarshal(data, &r); err != nil {
			return &scenarios.Result{Cell: spec.FullText(), Verdict: scenarios.Error, Reason: "unreadable result: " + err.Error()}
		}
		return &r
	}
	if spec.State.Is(types.SpecStateFailureStates) {
		return &scenarios.Result{Cell: spec.FullText(), Verdict: scenarios.Error,
			Reason: fmt.Sprintf("%s: %s", spec.State, spec.Failure.Message)}
	}
	return nil
}

// The suite's summary, written once from the report of every process.
var _ = ReportAfterSuite("lvslab summary", func(rep Report) {
	if *reportDir == "" {
		return
	}
	sh, _ := parseShard(*shardFlag)
	sum := &reports.Summary{RunID: *runID, Started: suiteStart, Kernel: kernel.Release(), Runner: kernel.CurrentRunner(),
		Shard: sh.String(), Host: runenv.HostName(), Findings: scenarios.Findings}
	if sum.RunID == "" {
		sum.RunID = reports.RunID(suiteStart)
		if sh.n > 1 {
			sum.RunID += fmt.Sprintf("-shard%dof%d", sh.i, sh.n)
		}
	}
	for _, spec := range rep.SpecReports {
		if spec.LeafNodeType != types.NodeTypeIt {
			continue
		}
		sum.Cells = append(sum.Cells, spec.FullText())
		if r := specResult(spec); r != nil {
			sum.Results = append(sum.Results, r)
		}
	}
	dir, err := sum.Write(*reportDir)
	if err != nil {
		Fail(err.Error())
	}
	fmt.Printf("lvslab: %d of %d cells in %s\n", len(sum.Results), len(sum.Cells), dir)
})

// TestShardsPartitionTheSuite lists the suite's specs with a Ginkgo dry
// run of this binary and checks what a merge of shards relies on: every
// spec's text is unique (it names the cell), and N shards are balanced.
func TestShardsPartitionTheSuite(t *testing.T) {
	report := filepath.Join(t.TempDir(), "dry-run.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestIPVSScenarios$", "-ginkgo.dry-run", "-ginkgo.json-report="+report)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var reps []types.Report
	if err := json.Unmarshal(data, &reps); err != nil || len(reps) != 1 {
		t.Fatalf("%s: %d reports, %v", report, len(reps), err)
	}
	seen := map[string]bool{}
	for _, spec := range reps[0].SpecReports {
		if spec.LeafNodeType != types.NodeTypeIt {
			continue
		}
		if seen[spec.FullText()] {
			t.Errorf("two specs are named %q: a merge cannot tell their cells apart", spec.FullText())
		}
		seen[spec.FullText()] = true
	}
	if len(seen) < 30 {
		t.Fatalf("the dry run listed %d specs; the suite has more than 30", len(seen))
	}
	// Each spec is in one shard by construction (a hash modulo N); what
	// can fail is the balance CI's runners need: every shard gets specs,
	// none more than twice its share.
	for _, n := range []uint32{2, 3, 5} {
		size := make([]int, n)
		for text := range seen {
			for i := uint32(1); i <= n; i++ {
				if (shard{i, n}).has(text) {
					size[i-1]++
				}
			}
		}
		for i, k := range size {
			if k == 0 || k > 2*len(seen)/int(n) {
				t.Errorf("%d shards: shard %d holds %d of %d specs, want 1 to %d", n, i+1, k, len(seen), 2*len(seen)/int(n))
			}
		}
		t.Logf("%d shards of %d specs: %v", n, len(seen), size)
		if slices.Contains(size, 0) {
			t.Errorf("%d shards of %d specs: sizes %v, an empty shard", n, len(seen), size)
		}
	}
}
