package scenarios

import (
	"context"
	"fmt"
	"net"
	"time"
)

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
		wdone <- Writes(ctx, l.Box(client), WriteLoad{Addr: rn.vip, Base: time.Now().UnixNano(), Every: writeInterval, Timeout: opts.Timeout}, wstop)
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
