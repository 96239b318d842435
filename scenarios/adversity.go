package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/director/afpacket"
	"github.com/lvslab/lvslab/lab"
	"golang.org/x/sys/unix"
)

// adversity makes a split brain, an advert loss, a frozen or isolated
// MASTER or a cut client happen and waits until the pair has converged
// back: the MASTER alone holding the VIP, both tables full and, under
// backup_only, the BACKUP's backup sync daemon running again. It times
// that from the heal or the thaw.
func (r *Result) adversity(ctx context.Context, rn running, ev Event) error {
	l, c, impl := rn.l, rn.c, rn.impl
	d1, d2 := c.Directors[0], c.Directors[1]
	master, backup := l.Box(d1.Node), l.Box(d2.Node)
	var heal func() error
	var err error
	switch ev {
	case SplitBrain, Isolated:
		cut := []impairment{{d1.Node, d1.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d2.MAC}},
			{d2.Node, d2.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d1.MAC}}}
		if ev == Isolated {
			cut = []impairment{{d1.Node, d1.Iface, true, lab.Match{}}, {d1.Node, d1.Iface, false, lab.Match{}}}
		}
		if heal, err = impair(l, lab.Netem{Loss: 100}, cut...); err != nil {
			return err
		}
		if err := waitPair(ctx, impl, c.takeoverBound(), func() string { return HoldsVIP(backup, c) }); err != nil {
			heal()
			return fmt.Errorf("cut off, the BACKUP did not take the VIP: %w", err)
		}
		if why := HoldsVIP(master, c); why != "" {
			heal()
			return fmt.Errorf("cut off, the MASTER let go of the VIP: %s", why)
		}
		if ev == SplitBrain {
			time.Sleep(splitBrainFor)
		} else {
			time.Sleep(isolatedFor)
		}
		// Heal just after the BACKUP's own advert: the MASTER's next one
		// then reaches it first and it yields unheard, so the MASTER
		// sends no gratuitous ARP (see Findings). Either order is a
		// real heal; this one the same for every implementation.
		if err := nextAdvert(l.Box(l.Topo.Bridges[0].Name), d2.MAC, 5*time.Second); err != nil {
			heal()
			return err
		}
	case ClientCut:
		cl := l.Topo.Node(clientNode(l.Topo)).Interfaces[0]
		heal, err = impair(l, lab.Netem{Loss: 100}, impairment{d1.Node, d1.Iface, true, lab.Match{SrcMAC: cl.HardwareAddr()}},
			impairment{clientNode(l.Topo), cl.Name, true, lab.Match{SrcMAC: d1.MAC}})
		if err != nil {
			return err
		}
		time.Sleep(clientCutFor)
	case Frozen:
		if err := impl.Signal(0, syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(frozenFor)
		heal = func() error { return impl.Signal(0, syscall.SIGCONT) }
	default: // advert loss
		heal, err = impair(l, lab.Netem{Loss: advertLoss(ev)}, impairment{d2.Node, d2.Iface, true, lab.Match{Protocol: vrrpProtocol, SrcMAC: d1.MAC}})
		if err != nil {
			return err
		}
		time.Sleep(advertLossFor)
	}
	if err := heal(); err != nil {
		return err
	}
	// Converged: the MASTER alone holds the VIP and both tables are full
	// again (a box cut off marked the other's realserver down).
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
