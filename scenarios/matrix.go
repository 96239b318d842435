package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/lvslab/lvslab/lab"
)

// Cell is one scenario of a matrix: an event, an implementation on both
// boxes (made fresh for every run) and a fix; and, for a pair with
// several virtual services, the one the workload goes to.
type Cell struct {
	Impl    func() Implementation
	Event   Event
	Fix     Fix
	Service *Service // nil: the matrix's Options.Service
	// Rate paces the workload at Rate connections/s, Connections of
	// them (a load curve's point); Single runs the first director only.
	Rate, Connections int
	Single            bool
}

// Name is the cell's name: EVENT/IMPLEMENTATION/FIX, as ParseCell reads
// it, then the service's name if the cell has one.
func (c Cell) Name() string {
	n := fmt.Sprintf("%s/%s/%s", c.Event, c.Impl().Name(), c.Fix)
	if c.Service != nil && c.Service.Name != "" {
		n += " " + c.Service.Name
	}
	if c.Single {
		n += " one-director"
	}
	if c.Rate > 0 {
		n += fmt.Sprintf(" %d/s", c.Rate)
	}
	return n
}

// Implementations by the names cells use; bin is the lvslab binary the Go
// director runs as.
func Implementations(bin string) map[string]func() Implementation {
	return map[string]func() Implementation{
		"keepalived": func() Implementation { return &Keepalived{} },
		"lvslab":     func() Implementation { return &GoDirector{Binary: bin} },
	}
}

// Headline is the set `lvslab run` runs by default, for keepalived and for
// the Go director: the loop and its fix in steady state, and the fix
// through a crash of the MASTER's director.
func Headline(bin string) []Cell {
	impls := Implementations(bin)
	var cells []Cell
	for _, name := range []string{"keepalived", "lvslab"} {
		cells = append(cells, Cell{Impl: impls[name], Event: Steady, Fix: FixNone}, Cell{Impl: impls[name], Event: Steady, Fix: FixFwmark},
			Cell{Impl: impls[name], Event: FailoverKill, Fix: FixFwmark})
	}
	return cells
}

// ParseCell reads EVENT/IMPLEMENTATION/FIX, e.g.
// vrrp-switchover/keepalived/redirect.
func ParseCell(s, bin string) (Cell, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Cell{}, fmt.Errorf("cell %q: want EVENT/IMPLEMENTATION/FIX, e.g. vrrp-switchover/keepalived/redirect", s)
	}
	c := Cell{Impl: Implementations(bin)[parts[1]], Event: Event(parts[0]), Fix: Fix(parts[2])}
	switch {
	case !slices.Contains(Events, c.Event):
		return c, fmt.Errorf("cell %q: event %q: want one of %v", s, parts[0], Events)
	case c.Impl == nil:
		return c, fmt.Errorf("cell %q: implementation %q: want keepalived or lvslab", s, parts[1])
	case !slices.Contains(Fixes, c.Fix):
		return c, fmt.Errorf("cell %q: fix %q: want one of %v", s, parts[2], Fixes)
	}
	return c, nil
}

// Matrix is cells to run in labs built from Topo: each Repeat times,
// Jobs at once, with Options.
type Matrix struct {
	Topo         *lab.Topology
	Cells        []Cell
	Repeat, Jobs int
	Options      Options
}

// Run runs every cell Repeat times, Jobs at once, each run in a lab of
// its own (most of a scenario is waiting on timers: VRRP's
// Master_Down_Interval, the IPVS estimator). It returns a result per cell,
// in order, tallied over its runs when Repeat > 1; a run that fails before
// it is judged (a lab that does not come up) is an ERROR row with its
// reason, and the other runs go on. log gets a line as each run starts
// and ends. Only an interrupted ctx fails the matrix.
func (m Matrix) Run(ctx context.Context, log io.Writer) ([]*Result, error) {
	cells, repeat := m.Cells, max(m.Repeat, 1)
	runs := make([][]*Result, len(cells))
	for i := range runs {
		runs[i] = make([]*Result, repeat)
	}
	slots := make(chan struct{}, max(m.Jobs, 1))
	var wg sync.WaitGroup
	for k := range repeat {
		for i, c := range cells {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				impl := c.Impl()
				name, o := m.run(c, impl, k)
				fmt.Fprintf(log, "lvslab: %s: %d connections\n", name, o.Connections)
				r, err := Run(ctx, m.Topo, impl, c.Fix, c.Event, o)
				if err != nil {
					// The run failed before the observers could judge:
					// its row says so, and the other runs still count.
					r = &Result{Scenario: c.Event, Implementation: impl.Name(), Fix: c.Fix, Service: o.Service.Name,
						Verdict: Error, Expected: cmp.Or(o.Expected, Expected(c.Fix, c.Event)), Reason: err.Error()}
				}
				fmt.Fprintf(log, "lvslab:   %s: %s (expected %s): %s\n", name, r.Verdict, r.Expected, r.Reason)
				runs[i][k] = r
			})
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err // interrupted: no verdict to report
	}
	out := make([]*Result, len(cells))
	for i, rs := range runs {
		out[i] = rs[0]
		if repeat > 1 {
			out[i] = Tally(rs)
		}
		out[i].Cell = cells[i].Name()
	}
	return out, nil
}

// run is the name of cell c's run k (from 0) and its options.
func (m Matrix) run(c Cell, impl Implementation, k int) (string, Options) {
	name := fmt.Sprintf("%s, %s, fix %s", c.Event, impl.Name(), c.Fix)
	o := m.Options
	if c.Service != nil {
		o.Service = *c.Service
		name += ", " + cmp.Or(o.Service.Name, fmt.Sprint(o.Service.Port))
	}
	if c.Rate > 0 {
		o.Rate, o.Connections = c.Rate, c.Connections
		name += fmt.Sprintf(", %d/s", c.Rate)
	}
	if c.Single {
		// One director has no second box to loop with.
		o.SingleDirector, o.Expected = true, Clean
		name += ", one director"
	}
	if m.Repeat > 1 {
		name += fmt.Sprintf(", run %d of %d", k+1, m.Repeat)
		if o.CaptureDir != "" {
			o.CaptureDir = filepath.Join(o.CaptureDir, fmt.Sprintf("run%d", k+1)) // one pcap per run
		}
	}
	return name, o
}
