package scenarios

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// VIPWatch times when a box takes the VIP from the kernel's address events
// (RTM_NEWADDR), not by polling: a failover measured to the event's
// arrival, not to the next 50 ms poll. The kernel's own address timestamp
// (ifa_cacheinfo's cstamp) counts hundredths of a second, coarser than the
// arrival, so the arrival it is.
type VIPWatch struct {
	box  *lab.Box
	c    Cluster
	done chan struct{} // closes the subscription
	got  chan struct{} // closed when the VIP came, at
	at   time.Time
	err  error // why the events ended first, if they did
	// takes counts every time the box took the VIP, not only the first.
	takes atomic.Int32
}

// watchVIP subscribes to box's address events. Start it before the action
// whose effect it times; Close it after.
func watchVIP(box *lab.Box, c Cluster) (*VIPWatch, error) {
	ns, err := netns.GetFromPath(box.Path())
	if err != nil {
		return nil, fmt.Errorf("watch %s's addresses: %w", box.Name, err)
	}
	defer ns.Close()
	w := &VIPWatch{box: box, c: c, done: make(chan struct{}), got: make(chan struct{})}
	updates, errs := make(chan netlink.AddrUpdate, 64), make(chan error, 1)
	err = netlink.AddrSubscribeWithOptions(updates, w.done, netlink.AddrSubscribeOptions{
		Namespace:    &ns,
		ListExisting: true, // a VIP taken while subscribing shows too
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s's addresses: %w", box.Name, err)
	}
	// Stamp each event as it arrives, whenever the caller looks; drain
	// until Close so the subscription never blocks.
	go func() {
		found := false
		finish := func(err error) {
			if !found {
				found, w.err = true, err
				close(w.got)
			}
		}
		for {
			select {
			case u, ok := <-updates:
				if !ok {
					finish(fmt.Errorf("%s's address events ended", box.Name))
					return
				}
				if u.NewAddr && u.LinkIndex != 1 && u.LinkAddress.IP.Equal(c.VIP.AsSlice()) {
					w.takes.Add(1)
					if !found {
						w.at = time.Now()
						finish(nil)
					}
				}
			case err := <-errs:
				finish(fmt.Errorf("%s's address events: %w", box.Name, err))
			}
		}
	}()
	return w, nil
}

// Wait returns when the box got the VIP on an interface (not lo), at most
// limit from now.
func (w *VIPWatch) Wait(ctx context.Context, limit time.Duration) (time.Time, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-w.got:
		return w.at, w.err
	case <-t.C:
		return time.Time{}, fmt.Errorf("not ready after %s: %s", limit, HoldsVIP(w.box, w.c))
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// Takes is how many times the box took the VIP so far.
func (w *VIPWatch) Takes() int { return int(w.takes.Load()) }

// Close ends the subscription.
func (w *VIPWatch) Close() { close(w.done) }
