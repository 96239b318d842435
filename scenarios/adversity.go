package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/afpacket"
	"golang.org/x/sys/unix"
)

// cutVRRP cuts VRRP between the two directors (SplitBrain), or the
// MASTER off from everything (Isolated), and waits until the BACKUP
// holds the VIP beside the MASTER. Its heal waits for the BACKUP's next
// advert: the MASTER's next one then reaches it first and it yields
// unheard, so the MASTER sends no gratuitous ARP (see Findings). Either
// order is a real heal; this one is the same for every implementation.
func cutVRRP(isolated bool) func(context.Context, *Result, running) (func() error, error) {
	return func(ctx context.Context, r *Result, rn running) (func() error, error) {
		l, c := rn.l, rn.c
		d1, d2 := c.Directors[0], c.Directors[1]
		cut := []impairment{{d1.Node, d1.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d2.MAC}},
			{d2.Node, d2.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d1.MAC}}}
		if isolated {
			cut = []impairment{{d1.Node, d1.Iface, true, lab.Match{}}, {d1.Node, d1.Iface, false, lab.Match{}}}
		}
		uncut, err := impair(l, lab.Netem{Loss: 100}, cut...)
		if err != nil {
			return nil, err
		}
		if err := waitPair(ctx, rn.impl, c.takeoverBound(), func() string { return HoldsVIP(l.Box(d2.Node), c) }); err != nil {
			return uncut, fmt.Errorf("cut off, the BACKUP did not take the VIP: %w", err)
		}
		if why := HoldsVIP(l.Box(d1.Node), c); why != "" {
			return uncut, fmt.Errorf("cut off, the MASTER let go of the VIP: %s", why)
		}
		return func() error {
			return errors.Join(nextAdvert(l.Box(l.Topo.Bridges[0].Name), d2.MAC, 5*time.Second), uncut())
		}, nil
	}
}

// cutClient loses every frame between the client and the MASTER
// (ClientCut).
func cutClient(ctx context.Context, r *Result, rn running) (func() error, error) {
	d1, client := rn.c.Directors[0], rn.client
	cl := rn.l.Topo.Node(client).Interfaces[0]
	return impair(rn.l, lab.Netem{Loss: 100}, impairment{d1.Node, d1.Iface, true, lab.Match{SrcMAC: cl.HardwareAddr()}},
		impairment{client, cl.Name, true, lab.Match{SrcMAC: d1.MAC}})
}

// freeze stops the MASTER's director, its whole process group, until the
// heal continues it (Frozen).
func freeze(ctx context.Context, r *Result, rn running) (func() error, error) {
	if err := rn.impl.Signal(0, syscall.SIGSTOP); err != nil {
		return nil, err
	}
	return func() error { return rn.impl.Signal(0, syscall.SIGCONT) }, nil
}

// loseAdverts loses percent of the MASTER's adverts to the BACKUP
// (AdvertLoss10, 30, 50): three in a row lost and the BACKUP takes the
// VIP until the next one arrives.
func loseAdverts(percent float64) func(context.Context, *Result, running) (func() error, error) {
	return func(ctx context.Context, r *Result, rn running) (func() error, error) {
		d1, d2 := rn.c.Directors[0], rn.c.Directors[1]
		return impair(rn.l, lab.Netem{Loss: percent}, impairment{d2.Node, d2.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d1.MAC}})
	}
}

// converge waits, after an adversity's heal, until the pair has
// converged back: the MASTER alone holding the VIP, both tables full
// (a box cut off marked the other's realserver down), and the fix in
// place. It times that from the heal.
func (r *Result) converge(ctx context.Context, rn running) error {
	l, c, impl := rn.l, rn.c, rn.impl
	t0 := time.Now()
	// readyBound: after a brief takeover the keepalived BACKUP under
	// backup_only can hang as it does at start (see readyBound and
	// Findings), both boxes holding the VIP for over 90 s.
	if err := waitReady(ctx, l, c, impl, c.readyBound()); err != nil {
		return fmt.Errorf("after the heal: %w (%s)", err, hangEvidence(l, c, impl))
	}
	// The fix back in place too: a REDIRECT judged before notify_backup
	// put its rule back re-balanced, a loop (1 cell in a full run).
	if err := fixInPlace(ctx, l, c, impl, rn.fix); err != nil {
		return fmt.Errorf("after the heal: %w (%s)", err, logTails(impl))
	}
	r.Failover = time.Since(t0)
	return nil
}

// nextAdvert returns once the bridge box has seen a VRRP advert from the
// MAC src arrive, at most limit from now.
func nextAdvert(bridge *lab.Box, src net.HardwareAddr, limit time.Duration) error {
	var c *afpacket.Conn
	err := bridge.Do(func() (err error) {
		c, err = afpacket.Listen(unix.SOCK_DGRAM, unix.ETH_P_IP, "advert watch")
		return err
	})
	if err != nil {
		return err
	}
	timer := time.AfterFunc(limit, func() { c.Close() })
	defer timer.Stop()
	defer c.Close()
	buf := make([]byte, 64)
	for {
		n, from, err := c.Recv(buf)
		if err != nil {
			return fmt.Errorf("no advert from %s on %s within %s: %w", src, bridge.Name, limit, err)
		}
		if n > 9 && buf[9] == vrrpProtocol && bytes.Equal(from.Addr[:6], src) {
			return nil
		}
	}
}

// impairment is one direction of a link that lab.Impair impairs: toward
// node on its bridge port, or from it; only the frames match picks.
type impairment struct {
	node, iface string
	toNode      bool
	match       lab.Match
}

// impair applies n to each of is and returns the heal of them all.
func impair(l *lab.Lab, n lab.Netem, is ...impairment) (func() error, error) {
	var undos []func() error
	heal := func() error {
		var errs []error
		for _, u := range undos {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	for _, i := range is {
		u, err := l.Impair(i.node, i.iface, i.toNode, i.match, n)
		if err != nil {
			heal()
			return nil, err
		}
		undos = append(undos, u)
	}
	return heal, nil
}
