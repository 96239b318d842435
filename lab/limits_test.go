package lab

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab/yamlcheck"
)

// TestYAMLLimits: input past a limit is refused quickly, with the file and
// line, before the decoder runs; the default topology is well inside.
func TestYAMLLimits(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x]\n"
	for i, prev := range "abcdefgh" {
		n := string(rune('b' + i))
		bomb += fmt.Sprintf("%s: &%s [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", n, n, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	var block strings.Builder
	for i := range 100 {
		block.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	var nodes strings.Builder
	nodes.WriteString("name: big\nnodes:\n")
	for i := range MaxNodes + 1 {
		fmt.Fprintf(&nodes, "  - name: n%d\n", i)
	}
	for name, tc := range map[string]struct{ data, want string }{
		"alias bomb": {bomb, "t.yaml:6: more than 100000 values once aliases are expanded"},
		"deep flow":  {"name: " + strings.Repeat("[", 250000) + strings.Repeat("]", 250000), "t.yaml:1: nested 65 deep or more; the limit is 64"},
		"deep block": {block.String(), "nested 65 deep or more"},
		"too large":  {"name: x\n" + strings.Repeat("# padding\n", yamlcheck.MaxYAMLBytes/10), "bytes; the limit is 1048576"},
		"many nodes": {nodes.String(), "65 nodes and 0 bridges; a lab has at most 64 of each"},
	} {
		t.Run(name, func(t *testing.T) {
			t0 := time.Now()
			_, err := ParseTopology("t.yaml", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
			t.Logf("refused in %s", time.Since(t0))
		})
	}
}
