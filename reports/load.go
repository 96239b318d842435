package reports

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/lvslab/lvslab/scenarios"
)

// loadLabel names who directed a load cell: one director alone (the
// reference) or the pair under its fix.
func loadLabel(r *scenarios.Result) string {
	if r.Single {
		return "one director"
	}
	return "pair, fix " + string(r.Fix)
}

// loadResults are the results of paced workloads (lvslab load).
func (s *Summary) loadResults() []*scenarios.Result {
	var out []*scenarios.Result
	for _, r := range s.Results {
		if r.Rate > 0 {
			out = append(out, r)
		}
	}
	return out
}

// LoadTable prints every paced cell: its rate, who directed, what the
// client saw (served, hung, failed, latency percentiles of the served) and
// what it cost (frames on the directors' bridge ports and softirq time,
// per connection).
func (s *Summary) LoadTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "RATE\tDIRECTORS\tVERDICT\tSERVED\tHUNG\tFAILED\tP50\tP99\tMAX\tDIRECTOR FRAMES/CONN\tSOFTIRQ MS/CONN\n")
	for _, r := range s.loadResults() {
		fmt.Fprintf(tw, "%d/s\t%s %s\t%s\t%d/%d\t%d\t%d\t%.1fms\t%.1fms\t%.1fms\t%.1f\t%.2f\n", r.Rate, r.Implementation, loadLabel(r),
			r.VerdictText(), r.Served, r.Connections, r.Hung, r.Errors, ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.Max),
			r.FramesPerConn, float64(r.SoftirqMs)/float64(max(r.Connections, 1)))
	}
	tw.Flush()
}

func ms[T ~int64](d T) float64 { return float64(d) / 1e6 }

// loadChart is one metric of the load curve as an SVG chart: a line per
// director setup across the rates.
type loadChart struct {
	Title  string
	Max    string // the y axis' top, as a label
	Series []loadSeries
	Rates  []xLabel
}

type loadSeries struct {
	Name, Color, Points string
	LabelY              int
}

type xLabel struct {
	X    int
	Text string
}

// Load chart geometry.
const loadW, loadH, loadPad = 420, 160, 30

var loadColors = []string{"#36c", "#c33", "#393", "#b60", "#739"}

// LoadCharts are the load curve's charts: frames per connection (the
// loop's amplification), p99 latency, the share hung or failed, and
// softirq time per connection; none when the run has no paced cells.
func (v view) LoadCharts() []loadChart {
	rs := v.loadResults()
	if len(rs) == 0 {
		return nil
	}
	var rates []int
	var names []string
	for _, r := range rs {
		if !slices.Contains(rates, r.Rate) {
			rates = append(rates, r.Rate)
		}
		if !slices.Contains(names, loadLabel(r)) {
			names = append(names, loadLabel(r))
		}
	}
	slices.Sort(rates)
	x := func(rate int) float64 {
		if len(rates) == 1 {
			return loadPad
		}
		return loadPad + float64(slices.Index(rates, rate))*(loadW-2*loadPad)/float64(len(rates)-1)
	}
	metrics := []struct {
		title, unit string
		of          func(*scenarios.Result) float64
	}{
		{"Frames on the directors' bridge ports per connection", "", func(r *scenarios.Result) float64 { return r.FramesPerConn }},
		{"p99 latency of the served connections", " ms", func(r *scenarios.Result) float64 { return ms(r.Latency.P99) }},
		{"Connections hung or failed", " %", func(r *scenarios.Result) float64 {
			return 100 * float64(r.Hung+r.Errors) / float64(max(r.Connections, 1))
		}},
		{"softirq time per connection (the whole guest)", " ms", func(r *scenarios.Result) float64 {
			return float64(r.SoftirqMs) / float64(max(r.Connections, 1))
		}},
	}
	var out []loadChart
	for _, m := range metrics {
		top := 0.0
		for _, r := range rs {
			top = max(top, m.of(r))
		}
		if top == 0 {
			top = 1
		}
		c := loadChart{Title: m.title, Max: fmt.Sprintf("%.3g%s", top, m.unit)}
		for _, rate := range rates {
			c.Rates = append(c.Rates, xLabel{int(x(rate)), fmt.Sprintf("%d/s", rate)})
		}
		for i, name := range names {
			var pts []string
			for _, r := range rs {
				if loadLabel(r) == name {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(r.Rate), loadH-loadPad-m.of(r)*(loadH-2*loadPad)/top))
				}
			}
			c.Series = append(c.Series, loadSeries{Name: name, Color: loadColors[i%len(loadColors)], Points: strings.Join(pts, " "), LabelY: 14 + 14*i})
		}
		out = append(out, c)
	}
	return out
}
