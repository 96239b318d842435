package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteMediansRatiosTargets(t *testing.T) {
	raw := filepath.Join(t.TempDir(), "x.txt")
	os.WriteFile(raw, []byte(`# title: Example
# machine: 2 cores
cpu: Some CPU   
BenchmarkUp/lvslab-2     	 10	 30000000 ns/op	 25.0 up-ms
BenchmarkUp/lvslab-2     	 10	 20000000 ns/op	 35.0 up-ms
BenchmarkUp/lvslab-2     	 10	 10000000 ns/op	 15.0 up-ms
BenchmarkUp/reference-2  	  5	200000000 ns/op
BenchmarkUp/reference-2  	  5	100000000 ns/op
PASS
`), 0o644)
	f, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	write(&b, raw, f, []target{{"BenchmarkUp/lvslab", "ratio", 0.25}, {"BenchmarkUp/lvslab", "up-ms", 20}})
	got := b.String()
	for _, want := range []string{
		"## Example", "- cpu: `Some CPU`",
		"| BenchmarkUp/lvslab | 3 | 20.0 ms | 25 up-ms | 0.133× |", // median of 3; 20 ms / 150 ms
		"| BenchmarkUp/reference | 2 | 150.0 ms |",                 // median of 2 is the mean
		"| BenchmarkUp/lvslab | ratio ≤ 0.25 | 0.1333 | met |",
		"| BenchmarkUp/lvslab | up-ms ≤ 20 | 25 | **MISSED** |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
