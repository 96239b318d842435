package scenarios

import (
	"context"
	"fmt"
	"net"
	"time"
)

// observeTraffic runs the traffic between two readings of the observers,
// the bridge captured throughout, and records what they saw. The capture
// starts an IPVS estimator tick before the first reading of the
// counters, which move at its ticks only: whatever they count between
// the readings crossed the bridge while the capture ran. (It started
// after the reading once, and a passive box counted one packet more than
// the capture saw clients send it, most likely a late segment of the
// writes between the tick and the capture.)
func (r *Result) observeTraffic(ctx context.Context, rn running, e eventSpec, passive Director, step func(string)) error {
	l, c := rn.l, rn.c
	bridge := l.Box(l.Topo.Bridges[0].Name)
	capture, err := startCapture(bridge)
	if err != nil {
		return fmt.Errorf("capture on %s: %w", bridge.Name, err)
	}
	stopped := false
	defer func() {
		if !stopped {
			capture.Stop()
		}
	}()
	time.Sleep(ipvsStatsDelay)
	before, err := observe(l, c)
	if err != nil {
		return err
	}
	if err := r.traffic(ctx, rn, e, passive, step); err != nil {
		return err
	}
	if rn.fix == FixBackupOnly {
		if r.SyncDaemons, err = syncDaemons(l, c); err != nil {
			return err
		}
	}
	// IPVS publishes its per-service counters from the rate estimator's
	// timer, every 2 s (ip_vs_est.c): wait for one tick before reading.
	// The capture runs on until then, so it holds every packet the
	// counters do (the connections' last segments among them).
	time.Sleep(ipvsStatsDelay)
	after, err := observe(l, c)
	frames, stats := capture.Stop()
	stopped = true
	if err != nil {
		return err
	}
	r.record(c, before, after)
	var dirs []net.HardwareAddr
	for _, d := range c.Directors {
		dirs = append(dirs, d.MAC)
	}
	r.Bounces = new(countBounces(frames, dirs, c.VIP, uint16(c.Port)))
	r.PassiveFromClients = new(FromClients(frames, passive.MAC, dirs, c.VIP, uint16(c.Port)))
	r.Capture = &stats
	if rn.opts.CaptureDir != "" {
		if r.Pcap, err = savePcap(rn.opts.CaptureDir, r, frames, capture.ports); err != nil {
			return err
		}
	}
	return nil
}

// traffic sends the read workload from the client, runs beside it what
// the event runs during the reads, and samples the bridge meanwhile.
func (r *Result) traffic(ctx context.Context, rn running, e eventSpec, passive Director, step func(string)) error {
	l, c, opts := rn.l, rn.c, rn.opts
	stop, sampled := make(chan struct{}), make(chan []Sample)
	r.TimelineStart = time.Now()
	go func() { sampled <- sampleFrames(l.Box(l.Topo.Bridges[0].Name), c, rn.client, r.TimelineStart, stop) }()
	defer func() {
		close(stop)
		r.Timeline = <-sampled
	}()
	t1 := time.Now()
	var every time.Duration
	if opts.Rate > 0 {
		every = time.Second / time.Duration(opts.Rate)
	}
	soft0, err := softirq()
	if err != nil {
		return err
	}
	var until <-chan struct{}
	var end func() error
	if e.duringReads != nil {
		every = e.readsEvery
		until, end = e.duringReads(ctx, r, rn, passive)
	}
	r.Conns, err = Reads(ctx, l.Box(rn.client), Workload{From: clientAddrs(l.Topo, rn.client), Kind: opts.Service.Backend, Addr: rn.vip,
		N: opts.Connections, Parallel: opts.Parallel, Every: every, Until: until, Dial: opts.DialTimeout, Timeout: opts.Timeout, PortBase: e.portBase()})
	if end != nil {
		if eerr := end(); eerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", e.name, eerr)
		} else if err == nil {
			step(fmt.Sprintf("%s done: %d outages, the servers up again", e.name, len(r.Outages)))
		}
	}
	if err != nil {
		return err
	}
	r.Traffic = time.Since(t1)
	step("traffic done")
	soft1, err := softirq()
	if err != nil {
		return err
	}
	r.Rate, r.SoftirqMs = opts.Rate, soft1-soft0
	time.Sleep(SampleInterval) // the last interval
	return nil
}
