package reports

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/scenarios"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 360, 120
	barW           = 240
)

// cell is one result as the page shows it.
type cell struct {
	*scenarios.Result
	// Directors and Client are SVG polyline points of the timeline, Down
	// the spans of its x axis when a flapping box's servers were down.
	Directors, Client string
	Down              []span
	MaxFrames         uint64
	// BadShare is the share of connections hung or failed, and BadWidth
	// its bar's width.
	BadShare float64
	BadWidth int
}

// span is a stretch of a chart's x axis.
type span struct{ X, W float64 }

func newCell(r *scenarios.Result) cell {
	c := cell{Result: r}
	for _, s := range r.Timeline {
		c.MaxFrames = max(c.MaxFrames, s.Directors, s.Client)
	}
	n := len(r.Timeline)
	var dir, cl []string
	for i, s := range r.Timeline {
		x := 0.0
		if n > 1 {
			x = float64(i) * chartW / float64(n-1)
		}
		y := func(v uint64) float64 {
			if c.MaxFrames == 0 {
				return chartH
			}
			return chartH - float64(v)*chartH/float64(c.MaxFrames)
		}
		dir = append(dir, fmt.Sprintf("%.1f,%.1f", x, y(s.Directors)))
		cl = append(cl, fmt.Sprintf("%.1f,%.1f", x, y(s.Client)))
	}
	c.Directors, c.Client = strings.Join(dir, " "), strings.Join(cl, " ")
	if n > 1 {
		first, last := r.TimelineStart.Add(r.Timeline[0].At), r.TimelineStart.Add(r.Timeline[n-1].At)
		x := func(t time.Time) float64 {
			return chartW * min(max(t.Sub(first).Seconds()/last.Sub(first).Seconds(), 0), 1)
		}
		for _, o := range r.Outages {
			if x0, x1 := x(o.From), x(o.To); x1 > x0 {
				c.Down = append(c.Down, span{x0, x1 - x0})
			}
		}
	}
	if r.Connections > 0 {
		c.BadShare = float64(r.Hung+r.Errors) / float64(r.Connections)
	}
	c.BadWidth = int(c.BadShare * barW)
	return c
}

var page = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"pct":  func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"secs": func(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lvslab run {{.RunID}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
.PASS { background: #d9f2d9; } .FAIL { background: #f7d4d4; }
.LOOP { color: #b00; font-weight: bold; } .CLEAN { color: #070; font-weight: bold; }
.ERROR, .NO-BALANCE, .UNSTABLE, .UNSERVED { color: #b60; font-weight: bold; }
svg { background: #fafafa; border: 1px solid #ddd; }
.dir { stroke: #c33; fill: none; stroke-width: 1.5; } .cli { stroke: #36c; fill: none; stroke-width: 1.5; }
.bar { fill: #c33; } .down { fill: #f3e3a0; } small { color: #666; } pre { white-space: pre-wrap; }
</style></head><body>
<h1>Two-box LVS-DR conformance: run {{.RunID}}</h1>
<p>Kernel {{.Kernel}} ({{.Runner}}), started {{.Started.Format "2006-01-02 15:04:05 MST"}}.
Result: <strong id="overall">{{if .YourConfig}}{{if .Pass}}every run is CLEAN{{else}}a run is not CLEAN: your configuration needs the fix below it{{end}}{{else if .Pass}}every verdict matches its expectation{{else}}a verdict does not match its expectation{{end}}</strong>.</p>
{{with .PairVerdict}}<p id="pair-verdict"><strong>{{.}}</strong></p>{{end}}
{{with .YourConfig}}<h2>Your configuration</h2>
<pre id="your-config">{{.}}</pre>{{end}}
<h2>Matrix</h2>
<table id="matrix">
<tr>{{if .Services}}<th>service</th>{{end}}{{if .LoadCharts}}<th>load</th>{{end}}<th>scenario</th><th>implementation</th><th>fix</th><th>verdict</th><th>expected</th><th>result</th><th>served</th><th>hung</th><th>failover</th><th>bounce depth</th><th>evidence</th>{{if .Merged}}<th>ran on</th>{{end}}</tr>
{{range .Cells}}<tr class="{{if .Pass}}PASS{{else}}FAIL{{end}}">
{{if $.Services}}<td>{{.Service}}</td>{{end}}{{if $.LoadCharts}}<td>{{.LoadText}}</td>{{end}}<td>{{.Scenario}}</td><td>{{.Implementation}}</td><td>{{.Fix}}</td>
<td class="{{.Verdict}}">{{.VerdictText}}</td><td>{{.Expected}}</td><td>{{if .Pass}}PASS{{else}}FAIL{{end}}</td>
<td>{{.Served}}/{{.Connections}}</td><td>{{.Hung}}</td><td>{{if .Failover}}{{secs .Failover}}{{else}}-{{end}}</td>
<td>{{with .Bounces}}{{.MaxDepth}}{{else}}-{{end}}{{with .Pcap}} <a href="{{.}}">pcapng</a>{{end}}{{with .Capture}}<br><small class="capture">{{.Frames}} frames{{if not .Complete}}, <strong>incomplete</strong>: {{.KernelDrops}} dropped by the kernel, {{.Overflow}} past the cap{{end}}</small>{{end}}</td><td>{{.Reason}}</td>
{{- if $.Merged}}<td>{{if .Shard}}shard {{.Shard}} on {{.Host}}, {{end}}kernel {{.Kernel}}</td>{{end}}</tr>
{{end}}</table>
<h2>Connections hung or failed, per cell</h2>
<svg width="{{.BarsW}}" height="{{.BarsH}}" role="img" aria-label="hung or failed share per cell">
{{range $i, $c := .Cells}}<text x="4" y="{{$.BarY $i 14}}" font-size="12">{{with $c.Service}}{{.}} / {{end}}{{$c.Scenario}} / {{$c.Implementation}} / {{$c.Fix}}{{with $c.LoadText}} / {{.}}{{end}}</text>
<rect class="bar" x="{{$.BarX}}" y="{{$.BarY $i 4}}" width="{{$c.BadWidth}}" height="12"/>
<text x="{{$.BarLabelX $c.BadWidth}}" y="{{$.BarY $i 14}}" font-size="12">{{pct $c.BadShare}}</text>
{{end}}</svg>
<h2>Bridge frames per 100 ms during the traffic</h2>
<p><small><span style="color:#c33">red</span>: frames on the directors' ports;
<span style="color:#36c">blue</span>: on the client's port; shaded: a flapping box's servers
down. With the loop, director frames far outnumber the client's.</small></p>
{{range .Cells}}<figure>
<figcaption>{{with .Service}}{{.}} / {{end}}{{.Scenario}} / {{.Implementation}} / fix {{.Fix}}{{with .LoadText}} / {{.}}{{end}}: <span class="{{.Verdict}}">{{.Verdict}}</span>
(peak {{.MaxFrames}} frames per 100 ms; x: 0 to {{secs .Traffic}} of traffic)</figcaption>
<svg width="` + fmt.Sprint(chartW) + `" height="` + fmt.Sprint(chartH) + `" viewBox="0 -2 ` + fmt.Sprint(chartW) + ` ` + fmt.Sprint(chartH+4) + `" role="img" aria-label="frames timeline">
{{range .Down}}<rect class="down" x="{{printf "%.1f" .X}}" y="0" width="{{printf "%.1f" .W}}" height="` + fmt.Sprint(chartH) + `"/>{{end}}
<polyline class="dir" points="{{.Directors}}"/><polyline class="cli" points="{{.Client}}"/>
</svg></figure>
{{end}}
{{with .LoadCharts}}<h2 id="load">Load: the loop's cost as the rate grows</h2>
<p><small>A paced workload through the VIP at each rate, in steady state; one director alone is the reference.
The table: <code>lvslab load</code>'s output, or the matrix above.</small></p>
{{range .}}<figure><figcaption>{{.Title}} (top: {{.Max}})</figcaption>
<svg width="` + fmt.Sprint(loadW+160) + `" height="` + fmt.Sprint(loadH) + `" role="img" aria-label="{{.Title}}">
<line x1="` + fmt.Sprint(loadPad) + `" y1="` + fmt.Sprint(loadH-loadPad) + `" x2="` + fmt.Sprint(loadW-loadPad) + `" y2="` + fmt.Sprint(loadH-loadPad) + `" stroke="#999"/>
{{range .Rates}}<text x="{{.X}}" y="` + fmt.Sprint(loadH-loadPad+16) + `" font-size="11" text-anchor="middle">{{.Text}}</text>
{{end}}{{range .Series}}<polyline fill="none" stroke-width="2" stroke="{{.Color}}" points="{{.Points}}"/>
<text x="` + fmt.Sprint(loadW) + `" y="{{.LabelY}}" font-size="11" fill="{{.Color}}">{{.Name}}</text>
{{end}}</svg></figure>
{{end}}{{end}}
{{with .Findings}}<h2>Expectations the kernel contradicted, investigated</h2>
<dl id="findings">
{{range .}}<dt><strong>{{.Title}}</strong></dt><dd>{{.Text}}</dd>
{{end}}</dl>{{end}}
<p><small>Raw data: <a href="summary.json">summary.json</a>. Re-render with <code>lvslab report</code>.</small></p>
</body></html>
`))

// view is the page's data.
type view struct {
	*Summary
	Cells []cell
}

// Merged reports whether the results come from several shards or kernels
// (lvslab report merge, run --kernels): the matrix then says where each
// cell ran.
func (v view) Merged() bool {
	return slices.ContainsFunc(v.Results, func(r *scenarios.Result) bool { return r.Shard != "" || r.Kernel != "" })
}

// Services reports whether the results name their virtual service (a
// user's pair with several): the matrix then has a column for it.
func (v view) Services() bool {
	return slices.ContainsFunc(v.Results, func(r *scenarios.Result) bool { return r.Service != "" })
}

// LoadText is a paced cell's rate and, for the reference, "one
// director"; "" for the others.
func (c cell) LoadText() string {
	if c.Rate == 0 {
		return ""
	}
	if c.Single {
		return fmt.Sprintf("%d/s, one director", c.Rate)
	}
	return fmt.Sprintf("%d/s", c.Rate)
}

// BarX is where the bars start, right of their labels.
func (v view) BarX() int {
	if v.Services() || len(v.loadResults()) > 0 {
		return 460
	}
	return 260
}
func (v view) BarsW() int              { return v.BarX() + barW + 60 }
func (v view) BarsH() int              { return 20*len(v.Cells) + 8 }
func (v view) BarY(i, off int) int     { return 4 + 20*i + off - 4 }
func (v view) BarLabelX(width int) int { return v.BarX() + 4 + width }

// WriteHTML renders the self-contained report page.
func (s *Summary) WriteHTML(w io.Writer) error {
	v := view{Summary: s}
	for _, r := range s.Results {
		v.Cells = append(v.Cells, newCell(r))
	}
	return page.Execute(w, v)
}

// Load reads dir/summary.json.
func Load(dir string) (*Summary, error) {
	path := filepath.Join(dir, "summary.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	var s Summary
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// Render writes index.html beside dir/summary.json.
func Render(dir string) error {
	s, err := Load(dir)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "index.html"))
	if err != nil {
		return err
	}
	err = s.WriteHTML(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("render %s: %w", f.Name(), err)
	}
	return nil
}
