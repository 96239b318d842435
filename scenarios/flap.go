package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// stopServers stops every server of node, its mariadbd and its built-in
// backends: its realserver is out of every service, not of the measured
// one only. start starts them again, mariadbd on the data it left.
func stopServers(l *lab.Lab, node string, backends map[backendKey]*backend) (start func(context.Context) error, err error) {
	stopped := map[backendKey]*backend{}
	for k, b := range backends {
		if k.node == node {
			b.stop()
			delete(backends, k)
			stopped[k] = b
		}
	}
	p := l.Process(node, "mariadbd")
	mariadb := p != nil
	if mariadb {
		if err := p.Stop(lab.StopGrace); err != nil {
			return nil, err
		}
	}
	if !mariadb && len(stopped) == 0 {
		return nil, fmt.Errorf("no mariadbd nor built-in backend in %s", node)
	}
	return func(ctx context.Context) error {
		for k, b := range stopped {
			nb, err := startBackend(l.Box(node), b.kind, k.port, b.serverID)
			if err != nil {
				return err
			}
			backends[k] = nb
		}
		if mariadb {
			_, err := l.RestartMariaDB(ctx, node)
			return err
		}
		return nil
	}, nil
}

// flap starts the MySQLFlap event on box d, the passive director,
// with the write workload across it and the VIP watched: flapCycles
// times, d's servers stop, stay down flapFor, start again, and once both
// directors send to d again stay up flapFor. cycled closes after the
// last; end waits for it and records the outages, the BACKUP's takeovers
// and the writes.
func flap(ctx context.Context, r *Result, rn running, d Director) (cycled <-chan struct{}, end func() error) {
	l, c, backends := rn.l, rn.c, rn.backends
	w, werr := watchVIP(l.Box(d.Node), c)
	writes := r.startWrites(ctx, rn)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		if err = werr; err != nil {
			return
		}
		for range flapCycles {
			o := Outage{From: time.Now()}
			var start func(context.Context) error
			if start, err = stopServers(l, d.Node, backends); err != nil {
				return
			}
			time.Sleep(flapFor)
			if err = start(ctx); err == nil {
				err = waitPair(ctx, rn.impl, c.checkUpBound(), func() string { return bothSendTo(l, c, d) })
			}
			o.To = time.Now()
			r.Outages = append(r.Outages, o)
			if err != nil {
				return
			}
			time.Sleep(flapFor)
		}
	}()
	return done, func() error {
		<-done
		if w != nil {
			r.Takeovers = new(w.Takes())
			w.Close()
		}
		return errors.Join(err, writes())
	}
}

// bothSendTo says why a director does not send to d's realserver, or "".
func bothSendTo(l *lab.Lab, c Cluster, d Director) string {
	for _, dd := range c.Directors {
		if to, err := sendsTo(l.Box(dd.Node), d.Addr); err != nil {
			return err.Error()
		} else if !to {
			return fmt.Sprintf("%s does not send to %s again yet", dd.Node, d.Addr)
		}
	}
	return ""
}
