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
BenchmarkFast/lvslab-2   	 10	 10000000 ns/op
BenchmarkFast/lvslab-2   	 10	 11000000 ns/op
BenchmarkFast/lvslab-2   	 10	 12000000 ns/op
BenchmarkFast/lvslab-2   	 10	 13000000 ns/op
BenchmarkFast/lvslab-2   	 10	 14000000 ns/op
BenchmarkFast/lvslab-2   	 10	 15000000 ns/op
BenchmarkFast/reference-2	 10	 10500000 ns/op
BenchmarkFast/reference-2	 10	 11500000 ns/op
BenchmarkFast/reference-2	 10	 12500000 ns/op
BenchmarkFast/reference-2	 10	 13500000 ns/op
BenchmarkFast/reference-2	 10	 14500000 ns/op
BenchmarkFast/reference-2	 10	 15500000 ns/op
BenchmarkSlow/lvslab-2   	 10	 10000000 ns/op
BenchmarkSlow/lvslab-2   	 10	 11000000 ns/op
BenchmarkSlow/lvslab-2   	 10	 12000000 ns/op
BenchmarkSlow/lvslab-2   	 10	 13000000 ns/op
BenchmarkSlow/lvslab-2   	 10	 14000000 ns/op
BenchmarkSlow/lvslab-2   	 10	 15000000 ns/op
BenchmarkSlow/reference-2	 10	100000000 ns/op
BenchmarkSlow/reference-2	 10	101000000 ns/op
BenchmarkSlow/reference-2	 10	102000000 ns/op
BenchmarkSlow/reference-2	 10	103000000 ns/op
BenchmarkSlow/reference-2	 10	104000000 ns/op
BenchmarkSlow/reference-2	 10	105000000 ns/op
PASS
`), 0o644)
	f, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	write(&b, raw, f, []target{{"BenchmarkUp/lvslab", "ratio", 0.25}, {"BenchmarkUp/lvslab", "up-ms", 20},
		{"BenchmarkFast/lvslab", "ns/op", 20e6}, {"BenchmarkFast/lvslab", "ns/op", 14e6}})
	got := b.String()
	for _, want := range []string{
		"## Example", "- cpu: `Some CPU`",
		// median of 3; 20 ms / 150 ms; 3 and 2 runs give no interval and
		// cannot tell two samples apart
		"| BenchmarkUp/lvslab | 3 | 20.0 ms ± ∞ | 25 up-ms | 0.133× ~ within noise (p=0.200 n=3+2) |",
		"| BenchmarkUp/reference | 2 | 150.0 ms ± ∞ |", // median of 2 is the mean
		"| BenchmarkUp/lvslab | ratio ≤ 0.25 | 0.1333 | ∞ (too few runs) | met, within noise |",
		"| BenchmarkUp/lvslab | up-ms ≤ 20 | 25 | ∞ (too few runs) | **MISSED**, within noise |",
		// 6 runs each: interleaved samples are noise, disjoint ones are not
		"| BenchmarkFast/lvslab | 6 | 12.5 ms ± 20% |  | 0.962× ~ within noise (p=0.699 n=6) |",
		"| BenchmarkSlow/lvslab | 6 | 12.5 ms ± 20% |  | 0.122× (p=0.002 n=6) |",
		"| BenchmarkFast/lvslab | ns/op ≤ 2e+07 | 1.25e+07 | 1e+07 – 1.5e+07 | met |",
		"| BenchmarkFast/lvslab | ns/op ≤ 1.4e+07 | 1.25e+07 | 1e+07 – 1.5e+07 | met, within noise |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// A single run's own interval (UNIT-lo, UNIT-hi: a bootstrap in the
// benchmark) is the target's; a single run's count has none to be within.
func TestSingleRunTargets(t *testing.T) {
	raw := filepath.Join(t.TempDir(), "x.txt")
	os.WriteFile(raw, []byte(`# title: One run
BenchmarkLoad/advert-50ms-2  	 34	 1000 ns/op	 0.95 median-ratio	 1.02 median-ratio-hi	 0.90 median-ratio-lo	 0 lost-writes	 3 false-takeovers
`), 0o644)
	f, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	write(&b, raw, f, []target{{"BenchmarkLoad/advert-50ms", "median-ratio", 1}, {"BenchmarkLoad/advert-50ms", "lost-writes", 0},
		{"BenchmarkLoad/advert-50ms", "false-takeovers", 0}})
	got := b.String()
	for _, want := range []string{
		"| BenchmarkLoad/advert-50ms | median-ratio ≤ 1 | 0.95 | 0.9 – 1.02 | met, within noise |",
		"| BenchmarkLoad/advert-50ms | lost-writes ≤ 0 | 0 | one run | met |",
		"| BenchmarkLoad/advert-50ms | false-takeovers ≤ 0 | 3 | one run | **MISSED** |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}
