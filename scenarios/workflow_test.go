package scenarios_test

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// workflow is the CI workflow that runs this suite on hosted runners.
var workflow = filepath.Join("..", ".github", "workflows", "conformance.yml")

// TestWorkflowLints runs actionlint on the workflow: a broken workflow
// fails make test, not the first push.
func TestWorkflowLints(t *testing.T) {
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFile(workflow, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s [%s]", workflow, e.Line, e.Column, e.Message, e.Kind)
	}
}

// TestWorkflowShardsTheSuite checks what the workflow must do beyond
// being valid: its shard job covers shards 1..N of `SHARD: I/N` on each
// kernel of its matrix, and the merge job runs after every shard.
func TestWorkflowShardsTheSuite(t *testing.T) {
	data, err := os.ReadFile(workflow)
	if err != nil {
		t.Fatal(err)
	}
	wf, errs := actionlint.Parse(data)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", workflow, errs[0])
	}
	shard, merge := wf.Jobs["shard"], wf.Jobs["merge"]
	if shard == nil || merge == nil || shard.Strategy == nil || shard.Strategy.Matrix == nil {
		t.Fatalf("%s: want a shard job with a matrix and a merge job", workflow)
	}
	rows := shard.Strategy.Matrix.Rows
	values := func(name string) (out []string) {
		if rows[name] == nil {
			t.Fatalf("%s: the shard matrix has no %s axis", workflow, name)
		}
		for _, v := range rows[name].Values {
			out = append(out, strings.Trim(v.String(), `"`))
		}
		return out
	}
	if len(values("kernel")) == 0 {
		t.Errorf("%s: no kernel in the matrix", workflow)
	}
	m := regexp.MustCompile(`SHARD: \$\{\{ matrix\.shard \}\}/(\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no step sets SHARD: ${{ matrix.shard }}/N", workflow)
	}
	n, _ := strconv.Atoi(string(m[1]))
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if got := values("shard"); !slices.Equal(got, want) {
		t.Errorf("%s: matrix shards %v, want %v for SHARD=I/%s", workflow, got, want, m[1])
	}
	if len(merge.Needs) != 1 || merge.Needs[0].Value != "shard" {
		t.Errorf("%s: the merge job must need the shard job", workflow)
	}
	if !strings.Contains(string(data), "lvslab report merge") || !strings.Contains(string(data), "make conformance SHARD=") {
		t.Errorf("%s: want make conformance SHARD= in the shards and lvslab report merge after them", workflow)
	}
}
