package scenarios

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// apply makes event ev happen to the running cluster and returns the
// passive director after it: the one not holding the VIP (the BACKUP, or
// after a failover the old MASTER). It records how long the event took to
// take effect and, across failovers, the write workload.
func (r *Result) apply(ctx context.Context, rn running, ev Event) (Director, error) {
	l, c, impl, fix := rn.l, rn.c, rn.impl, rn.fix
	passive := c.Directors[1]
	switch ev {
	case MySQLDown:
		t1 := time.Now()
		if _, err := stopServers(l, passive.Node, rn.backends); err != nil {
			return Director{}, err
		}
		err := waitPair(ctx, impl, c.checkDownBound(), func() string {
			for _, d := range c.Directors {
				if to, err := sendsTo(l.Box(d.Node), passive.Addr); err != nil {
					return err.Error()
				} else if to {
					return fmt.Sprintf("%s still sends to %s", d.Node, passive.Addr)
				}
			}
			return ""
		})
		if err != nil {
			return Director{}, fmt.Errorf("health check: %w", err)
		}
		r.Failover = time.Since(t1)
	case FailoverStop, FailoverKill, FailoverDelayed:
		err := r.acrossWrites(ctx, rn, func() (err error) {
			if ev == FailoverDelayed {
				d1, d2 := c.Directors[0], c.Directors[1]
				heal, err := impair(l, lab.Netem{Delay: "100ms", Jitter: "50ms"},
					impairment{d1.Node, d1.Iface, true, lab.Match{SrcMAC: d2.MAC}}, impairment{d2.Node, d2.Iface, true, lab.Match{SrcMAC: d1.MAC}})
				if err != nil {
					return err
				}
				defer heal()
			}
			r.Failover, err = TimeVIPTakeover(ctx, l.Box(passive.Node), c, func() error { return impl.Stop(0, ev == FailoverStop) })
			return err
		})
		if err != nil {
			return Director{}, fmt.Errorf("failover: %w", err)
		}
		passive = c.Directors[0]
	case SplitBrain, AdvertLoss10, AdvertLoss30, AdvertLoss50, Frozen, Isolated, ClientCut:
		w, err := WatchVIP(l.Box(passive.Node), c)
		if err != nil {
			return Director{}, err
		}
		defer w.Close()
		err = r.acrossWrites(ctx, rn, func() error { return r.adversity(ctx, rn, ev) })
		if err != nil {
			return Director{}, fmt.Errorf("%s: %w", ev, err)
		}
		r.Takeovers = new(w.Takes())
	case Switchover:
		t1 := time.Now()
		c.Directors = slices.Clone(c.Directors) // the caller's stay as they were
		c.Directors[1].Priority = 200
		err := impl.Stop(1, true)
		if err == nil {
			err = impl.Start(ctx, l, c, 1, fix)
		}
		if err == nil {
			err = waitPair(ctx, impl, c.preemptBound(), func() string { return onlyVIP(l, c, 1) })
		}
		if err != nil {
			return Director{}, fmt.Errorf("switchover: %w", err)
		}
		r.Failover = time.Since(t1)
		passive = c.Directors[0]
	case Reconfigure:
		settler, ok := impl.(interface {
			Settle(context.Context, *lab.Lab, Cluster) error
		})
		if !ok {
			return Director{}, fmt.Errorf("%s cannot say when its restarted directors have settled: no reconfigure event", impl.Name())
		}
		t1 := time.Now()
		for _, i := range []int{1, 0} {
			if err := impl.Stop(i, false); err != nil {
				return Director{}, err
			}
			if err := impl.Start(ctx, l, c, i, fix); err != nil {
				return Director{}, err
			}
		}
		if err := settler.Settle(ctx, l, c); err != nil {
			return Director{}, fmt.Errorf("after the restarts: %w", err)
		}
		if err := waitReady(ctx, l, c, impl, 30*time.Second); err != nil {
			return Director{}, fmt.Errorf("after the restarts: %w", err)
		}
		r.Failover = time.Since(t1)
	case Failback:
		if err := impl.Stop(0, false); err != nil {
			return Director{}, err
		}
		if err := waitPair(ctx, impl, c.takeoverBound(), func() string { return HoldsVIP(l.Box(passive.Node), c) }); err != nil {
			return Director{}, fmt.Errorf("failover before the failback: %w", err)
		}
		t1 := time.Now()
		if err := impl.Start(ctx, l, c, 0, fix); err != nil {
			return Director{}, err
		}
		if err := waitPair(ctx, impl, c.preemptBound(), func() string { return onlyVIP(l, c, 0) }); err != nil {
			return Director{}, fmt.Errorf("failback: %w", err)
		}
		r.Failover = time.Since(t1)
	}
	return passive, nil
}

// acrossWrites makes event happen while the write workload runs (see
// startWrites).
func (r *Result) acrossWrites(ctx context.Context, rn running, event func() error) error {
	writes := r.startWrites(ctx, rn)
	time.Sleep(5 * writeInterval)
	err := event()
	time.Sleep(5 * writeInterval)
	if werr := writes(); err == nil {
		err = werr
	}
	return err
}

// startWrites starts the write workload (MySQL inserts, on a MySQL
// service); the returned func stops it and checks that every
// acknowledged write survived.
func (r *Result) startWrites(ctx context.Context, rn running) func() error {
	l, c, opts, client := rn.l, rn.c, rn.opts, rn.client
	mysql := opts.Service.Backend == BackendMySQL
	wstop, wdone := make(chan struct{}), make(chan []Write)
	go func() {
		if !mysql {
			<-wstop
			wdone <- nil
			return
		}
		wdone <- Writes(ctx, l.Box(client), rn.vip, time.Now().UnixNano(), writeInterval, opts.Timeout, wstop)
	}()
	return func() error {
		close(wstop)
		writes := <-wdone
		if !mysql {
			return nil
		}
		var dbs []string
		for _, a := range c.Realservers() {
			dbs = append(dbs, net.JoinHostPort(a.String(), fmt.Sprint(c.Port)))
		}
		ws, err := CheckWrites(ctx, l.Box(client), dbs, writes, opts.Timeout)
		if err != nil {
			return err
		}
		r.Writes = &ws
		return nil
	}
}

// writeInterval paces the write workload across a failover.
const writeInterval = 50 * time.Millisecond
