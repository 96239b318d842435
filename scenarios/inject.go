package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// apply makes event e happen to the running cluster, as its row of the
// events table says, and returns the passive director after it: the one
// not holding the VIP (the BACKUP, or after a failover the old MASTER).
func (r *Result) apply(ctx context.Context, rn running, e eventSpec) (Director, error) {
	passive := rn.c.Directors[1]
	if e.masterPassive {
		passive = rn.c.Directors[0]
	}
	if e.inject == nil {
		return passive, nil
	}
	var w *VIPWatch
	if e.converges {
		var err error
		if w, err = watchVIP(rn.l.Box(rn.c.Directors[1].Node), rn.c); err != nil {
			return Director{}, err
		}
		defer w.Close()
	}
	happen := func() error { return r.happen(ctx, rn, e) }
	if e.writes {
		happen = func() error { return r.acrossWrites(ctx, rn, func() error { return r.happen(ctx, rn, e) }) }
	}
	if err := happen(); err != nil {
		return Director{}, fmt.Errorf("%s: %w", e.name, err)
	}
	if w != nil {
		r.Takeovers = new(w.Takes())
	}
	return passive, nil
}

// happen injects e, lets it last, heals it and, where it converges,
// waits for the pair to.
func (r *Result) happen(ctx context.Context, rn running, e eventSpec) error {
	heal, err := e.inject(ctx, r, rn)
	if err != nil {
		if heal != nil {
			err = errors.Join(err, heal())
		}
		return err
	}
	time.Sleep(e.lasts)
	if heal != nil {
		if err := heal(); err != nil {
			return fmt.Errorf("heal: %w", err)
		}
	}
	if e.converges {
		return r.converge(ctx, rn)
	}
	return nil
}

// serverDown stops the passive box's servers and times until neither
// director's health checks send to it (MySQLDown).
func serverDown(ctx context.Context, r *Result, rn running) (func() error, error) {
	l, c, passive := rn.l, rn.c, rn.c.Directors[1]
	t1 := time.Now()
	if _, err := stopServers(l, passive.Node, rn.backends); err != nil {
		return nil, err
	}
	err := waitPair(ctx, rn.impl, c.checkDownBound(), func() string {
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
		return nil, fmt.Errorf("health check: %w", err)
	}
	r.Failover = time.Since(t1)
	return nil, nil
}

// failover stops the MASTER's director (gracefully, or by SIGKILL) and
// times until the BACKUP holds the VIP; delayed first delays every frame
// between the two boxes by 100 ms ± 50 ms, healed once it does.
func failover(graceful, delayed bool) func(context.Context, *Result, running) (func() error, error) {
	return func(ctx context.Context, r *Result, rn running) (heal func() error, err error) {
		l, c := rn.l, rn.c
		d1, d2 := c.Directors[0], c.Directors[1]
		if delayed {
			heal, err = impair(l, lab.Netem{Delay: "100ms", Jitter: "50ms"},
				impairment{d1.Node, d1.Iface, true, lab.Match{SrcMAC: d2.MAC}}, impairment{d2.Node, d2.Iface, true, lab.Match{SrcMAC: d1.MAC}})
			if err != nil {
				return nil, err
			}
		}
		r.Failover, err = TimeVIPTakeover(ctx, l.Box(d2.Node), c, func() error { return rn.impl.Stop(0, graceful) })
		return heal, err
	}
}

// switchover restarts the BACKUP's director with a priority above the
// MASTER's and times until it alone holds the VIP (Switchover).
func switchover(ctx context.Context, r *Result, rn running) (func() error, error) {
	t1 := time.Now()
	c := rn.c
	c.Directors = slices.Clone(c.Directors) // the run's stay as they were
	c.Directors[1].Priority = 200
	err := rn.impl.Stop(1, true)
	if err == nil {
		err = rn.impl.Start(ctx, rn.l, c, 1, rn.fix)
	}
	if err == nil {
		err = waitPair(ctx, rn.impl, c.preemptBound(), func() string { return onlyVIP(rn.l, c, 1) })
	}
	r.Failover = time.Since(t1)
	return nil, err
}

// reconfigure SIGKILLs each director and starts it again with the fix,
// the BACKUP first, and times until the pair is ready (Reconfigure).
func reconfigure(ctx context.Context, r *Result, rn running) (func() error, error) {
	l, c, impl := rn.l, rn.c, rn.impl
	settler, ok := impl.(interface {
		Settle(context.Context, *lab.Lab, Cluster) error
	})
	if !ok {
		return nil, fmt.Errorf("%s cannot say when its restarted directors have settled", impl.Name())
	}
	t1 := time.Now()
	for _, i := range []int{1, 0} {
		if err := impl.Stop(i, false); err != nil {
			return nil, err
		}
		if err := impl.Start(ctx, l, c, i, rn.fix); err != nil {
			return nil, err
		}
	}
	if err := settler.Settle(ctx, l, c); err != nil {
		return nil, fmt.Errorf("after the restarts: %w", err)
	}
	if err := waitReady(ctx, l, c, impl, 30*time.Second); err != nil {
		return nil, fmt.Errorf("after the restarts: %w", err)
	}
	r.Failover = time.Since(t1)
	return nil, nil
}

// failback SIGKILLs the MASTER's director, waits for the BACKUP to take
// the VIP, restarts it and times until it preempts back (Failback).
func failback(ctx context.Context, r *Result, rn running) (func() error, error) {
	l, c, impl := rn.l, rn.c, rn.impl
	if err := impl.Stop(0, false); err != nil {
		return nil, err
	}
	if err := waitPair(ctx, impl, c.takeoverBound(), func() string { return HoldsVIP(l.Box(c.Directors[1].Node), c) }); err != nil {
		return nil, fmt.Errorf("failover before the failback: %w", err)
	}
	t1 := time.Now()
	if err := impl.Start(ctx, l, c, 0, rn.fix); err != nil {
		return nil, err
	}
	if err := waitPair(ctx, impl, c.preemptBound(), func() string { return onlyVIP(l, c, 0) }); err != nil {
		return nil, err
	}
	r.Failover = time.Since(t1)
	return nil, nil
}
