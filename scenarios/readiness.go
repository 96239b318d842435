package scenarios

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/lab"
	"github.com/vishvananda/netlink"
)

// waitBackupDaemon waits until the BACKUP runs its backup sync daemon:
// backup_only guards a box only then, and its director starts it after
// the state change.
func waitBackupDaemon(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation) error {
	return waitPair(ctx, impl, c.readyBound(), func() string {
		ds, err := syncDaemons(l, c)
		if err != nil {
			return err.Error()
		}
		for _, b := range c.Directors[1:] {
			if !slices.ContainsFunc(ds[b.Node], func(d director.SyncDaemon) bool { return d.State == director.SyncBackup }) {
				return b.Node + " runs no backup sync daemon yet"
			}
		}
		return ""
	})
}

// WaitReady waits until the MASTER alone holds the VIP on its interface and
// both directors have a virtual service with every realserver.
func WaitReady(ctx context.Context, l *lab.Lab, c Cluster, limit time.Duration) error {
	return waitReady(ctx, l, c, nil, limit)
}

// tableSizer is an implementation whose boxes list their own realservers
// (a user's pair): how many a box's IPVS table holds in all once
// settled, and how many its service for VIP:port balances to.
type tableSizer interface {
	TableSize(node string) int
	Serving(node string, svc netip.AddrPort) int
}

// waitReady is WaitReady with each box's table as impl says, if it does;
// else every virtual service has each of the cluster's servers.
func waitReady(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, stall time.Duration) error {
	return waitPair(ctx, impl, stall, func() string {
		// Started at once, both boxes may time out as BACKUP and take the
		// VIP until the MASTER's adverts reach the other: ready is after.
		if why := onlyVIP(l, c, 0); why != "" {
			return why
		}
		for i, d := range c.Directors {
			if i == 1 && c.Single {
				continue
			}
			why := ""
			if ts, ok := impl.(tableSizer); ok {
				why = tableHolds(l.Box(d.Node), ts.TableSize(d.Node))
			} else {
				why = hasService(l.Box(d.Node), len(c.servers()))
			}
			if why != "" {
				return why
			}
		}
		return ""
	})
}

// WaitFor polls check until it returns "" (ready) or limit passes; the
// error carries check's last answer. A wait on a pair is waitPair's.
func WaitFor(ctx context.Context, limit time.Duration, check func() string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		last := check()
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %s", limit, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pairCeiling bounds a pair wait that keeps progressing, as a multiple
// of its stall bound.
const pairCeiling = 3

// waitPair polls check until it returns "" (done), bounded by the pair's
// progress, not the clock: it fails once neither check's answer (which
// box lacks what) nor any director's log (impl's, if not nil) has moved
// for stall, or after pairCeiling × stall though they move. A pair beside
// other labs on a loaded machine settles, takes over and checks slower but
// moves; a hung director does not. stall is each wait's bound as the
// protocol's timers set it (Timers): a takeover moves nothing until the
// BACKUP's timer fires.
func waitPair(ctx context.Context, impl Implementation, stall time.Duration, check func() string) error {
	last := check()
	progress := func() uint64 {
		h := fnv.New64a()
		h.Write([]byte(last))
		n := h.Sum64()
		if impl != nil {
			for _, log := range impl.Logs() {
				n += uint64(len(log))
			}
		}
		return n
	}
	w := lab.NewStallWatch(stall, pairCeiling*stall, progress)
	for last != "" {
		if why := w.Stalled(); why != "" {
			return fmt.Errorf("not done, %s: %s", why, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done: %w: %s", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
		last = check()
	}
	return nil
}

// TimeVIPTakeover runs action and times it until box holds the VIP, from
// the kernel's address event.
func TimeVIPTakeover(ctx context.Context, box *lab.Box, c Cluster, action func() error) (time.Duration, error) {
	w, err := watchVIP(box, c)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	if HoldsVIP(box, c) == "" {
		return 0, fmt.Errorf("%s: %w", box.Name, errHeldBefore)
	}
	t0 := time.Now()
	if err := action(); err != nil {
		return 0, err
	}
	at, err := w.Wait(ctx, c.takeoverBound())
	return at.Sub(t0), err
}

// errHeldBefore: the box TimeVIPTakeover times already held the VIP.
var errHeldBefore = errors.New("held the VIP before the event")

// onlyVIP says why director i is not the only one holding the VIP, or "".
func onlyVIP(l *lab.Lab, c Cluster, i int) string {
	if why := HoldsVIP(l.Box(c.Directors[i].Node), c); why != "" {
		return why
	}
	for _, p := range c.Peers(i) {
		if HoldsVIP(l.Box(p.Node), c) == "" {
			return p.Node + " holds the VIP too"
		}
	}
	return ""
}

// HoldsVIP says why box does not hold the VIP on its interface, or "".
func HoldsVIP(box *lab.Box, c Cluster) string {
	addrs, err := box.Netlink().AddrList(nil, 0)
	if err != nil {
		return err.Error()
	}
	// The VIP is on lo (ifindex 1) of every realserver; only the MASTER
	// has it on its interface as well.
	onIface := func(a netlink.Addr) bool { return a.LinkIndex != 1 && a.IP.Equal(c.VIP.AsSlice()) }
	if !slices.ContainsFunc(addrs, onIface) {
		return fmt.Sprintf("%s does not hold the VIP %s", box.Name, c.VIP)
	}
	return ""
}

// sendsTo says whether one of box's virtual services sends to realserver
// rs (with a weight).
func sendsTo(box *lab.Box, rs netip.Addr) (bool, error) {
	table, err := ipvsTable(box)
	for _, s := range table {
		if slices.ContainsFunc(s.Dests, func(d director.Dest) bool { return d.Addr == rs && d.Weight > 0 }) {
			return true, nil
		}
	}
	return false, err
}

// hasService says why box has no virtual service, or one without its n
// realservers in service, or "". A realserver a checker quiesced (weight
// 0) is not in service: after an isolated MASTER's heal, its peer's table
// still held it at weight 0 and served every client itself (NO-BALANCE,
// 1 cell in a full run).
func hasService(box *lab.Box, n int) string {
	table, err := ipvsTable(box)
	switch {
	case err != nil:
		return err.Error()
	case len(table) == 0:
		return box.Name + " has no virtual service yet"
	}
	for _, s := range table {
		weighted := 0
		for _, d := range s.Dests {
			if d.Weight > 0 {
				weighted++
			}
		}
		if weighted != n {
			return fmt.Sprintf("%s's virtual service %s has %d realservers in service, not %d, yet", box.Name, s.Key(), weighted, n)
		}
	}
	return ""
}

// tableHolds says why box's IPVS table does not hold n realservers in
// all its virtual services, or "".
func tableHolds(box *lab.Box, n int) string {
	table, err := ipvsTable(box)
	if err != nil {
		return err.Error()
	}
	got := 0
	for _, s := range table {
		got += len(s.Dests)
	}
	if got != n {
		return fmt.Sprintf("%s's virtual services hold %d realservers in all, not the %d its config lists, yet", box.Name, got, n)
	}
	return ""
}

// ipvsTable reads box's IPVS table, services with their destinations, as
// the director does.
func ipvsTable(box *lab.Box) (table []director.Service, err error) {
	err = box.Do(func() error {
		k, err := director.OpenKernel()
		if err != nil {
			return err
		}
		defer k.Close()
		table, err = director.ReadTable(k)
		return err
	})
	return table, err
}

// SettledPair builds a lab from topo (with o), starts impl with fix on
// its directors and waits until the pair is settled (Settle). done stops
// the directors and tears the lab down; on error nothing is left.
func SettledPair(ctx context.Context, topo *lab.Topology, impl Implementation, fix Fix, o lab.Options) (l *lab.Lab, c Cluster, done func() error, err error) {
	if c, err = runCluster(topo, impl, Options{}); err != nil {
		return nil, c, nil, err
	}
	if l, err = lab.Build(ctx, topo, o); err != nil {
		return nil, c, nil, err
	}
	done = func() error {
		for i := range c.Directors {
			impl.Stop(i, true)
		}
		return l.Close()
	}
	if err = StartBoth(ctx, impl, l, c, fix); err == nil {
		err = Settle(ctx, l, c, impl, fix)
	}
	if err != nil {
		return nil, c, nil, errors.Join(err, done())
	}
	return l, c, done, nil
}

// Settle waits until the pair started with fix is ready for traffic: the
// MASTER alone holds the VIP with both tables full, and what the fix
// runs besides is in place. Its errors carry the directors' log tails.
func Settle(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, fix Fix) error {
	if err := waitReady(ctx, l, c, impl, c.readyBound()); err != nil {
		return fmt.Errorf("%w (%s)", err, hangEvidence(l, c, impl))
	}
	if err := fixInPlace(ctx, l, c, impl, fix); err != nil {
		return fmt.Errorf("%w (%s)", err, hangEvidence(l, c, impl))
	}
	return nil
}

// hangEvidence is what a wait that ran out shows of a hang: the directors'
// log tails, where each director box's processes wait, and where IPVS's
// sync-daemon kernel threads do.
func hangEvidence(l *lab.Lab, c Cluster, impl Implementation) string {
	out := logTails(impl)
	for _, d := range c.Directors {
		out += fmt.Sprintf("; %s: %s", d.Node, l.Box(d.Node).Stacks())
	}
	return out + "; kernel: " + lab.KernelThreadStacks("ipvs-")
}

// fixInPlace waits until what fix runs besides the directors' tables is
// in place on a settled pair: under backup_only the BACKUP's backup sync
// daemon; under REDIRECT the notify scripts' rules (the MASTER does not
// redirect, the BACKUP does). keepalived runs its notify scripts
// asynchronously, after the state changes: until notify_master has run,
// the MASTER redirects all VIP traffic to itself; until notify_backup
// has, the BACKUP does not, and re-balances. readyBound, not the 15 s it
// was: beside six labs and an out-of-memory probe on two cores, a
// notify_master took longer once (1 of 5 newcomer runs).
func fixInPlace(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, fix Fix) error {
	switch fix {
	case FixBackupOnly:
		return waitBackupDaemon(ctx, l, c, impl)
	case FixRedirect:
		return waitPair(ctx, impl, c.readyBound(), func() string {
			if on, err := redirecting(l.Box(c.Directors[0].Node), c); err != nil || on {
				return fmt.Sprintf("the MASTER still redirects VIP traffic (%v)", err)
			}
			for _, b := range c.Directors[1:] {
				if on, err := redirecting(l.Box(b.Node), c); err != nil || !on {
					return fmt.Sprintf("BACKUP %s does not redirect VIP traffic yet (%v)", b.Node, err)
				}
			}
			return ""
		})
	}
	return nil
}
