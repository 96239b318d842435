package director

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lvslab/lvslab/director/internal/fake"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
)

// stall is how long each slow fake call below takes: iptables under load,
// a reconcile of a large table, a status client reading IPVS. A test's
// end cuts the stalls short (so the worker drains at once).
type stall chan struct{}

func (s stall) wait() {
	select {
	case <-time.After(3 * time.Second):
	case <-s:
	}
}

// slowIPTables stalls the calls the guard makes.
type slowIPTables struct {
	IPTables
	stall
}

func (s slowIPTables) ChainExists(table, chain string) (bool, error) {
	s.wait()
	return s.IPTables.ChainExists(table, chain)
}

func (s slowIPTables) Exists(table, chain string, rule ...string) (bool, error) {
	s.wait()
	return s.IPTables.Exists(table, chain, rule...)
}

// slowIPVS stalls every table dump: reconciles and status reads.
type slowIPVS struct {
	IPVS
	stall
}

func (s slowIPVS) GetServices() ([]*ipvs.Service, error) {
	s.wait()
	return s.IPVS.GetServices()
}

// loopNetlink takes VIPs without a kernel.
type loopNetlink struct{ fakeNetlink }

func (loopNetlink) AddrAdd(netlink.Link, *netlink.Addr) error { return nil }
func (loopNetlink) AddrDel(netlink.Link, *netlink.Addr) error { return nil }

type sent struct {
	at   time.Time
	prio uint8
}

// stalledDaemon is a daemon whose every slow dependency stalls, with
// advert_int 300ms; sends records its adverts.
func stalledDaemon(t *testing.T, priority string) (d *Daemon, sends func() []sent) {
	src := strings.Replace(baseConfig, "  priority: 150", "  priority: "+priority+"\n  advert_int: 300ms", 1)
	cfg, err := ParseConfig("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	st := make(stall)
	d = &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), nl: &loopNetlink{}, ipt: slowIPTables{fake.NewIPTables(), st},
		ipvs: slowIPVS{fake.NewIPVS(), st}, stats: slowIPVS{fake.NewIPVS(), st}, work: newWorker(goSpawn),
		ifi: &net.Interface{Index: 2, Name: "eth0"}, addr: netip.MustParsePrefix("192.168.1.233/24"),
		vips: []netip.Addr{netip.MustParseAddr("192.168.1.200")}, asks: make(chan chan Status)}
	t.Cleanup(func() { close(st); d.work.close() })
	d.initState()
	var mu sync.Mutex
	var log []sent
	d.transmit = func(a Advert) error {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, sent{time.Now(), a.Priority})
		return nil
	}
	d.announce = func(netip.Addr, func() bool) {}
	return d, func() []sent { mu.Lock(); defer mu.Unlock(); return append([]sent(nil), log...) }
}

// stallEverything keeps the worker and the status path busy while the
// loop runs: a realserver failing its checks (a stalled reconcile each time
// it turns down) and a status client reading the stalled IPVS table
// again and again. One: status reads take a mutex, and synctest's clock
// stands still while a goroutine waits on one.
func stallEverything(ctx context.Context, d *Daemon, checks chan<- checkResult) {
	go func() {
		for ctx.Err() == nil {
			d.ask(ctx)
		}
	}()
	go func() {
		for ctx.Err() == nil {
			select {
			case checks <- checkResult{svc: 0, rs: 1, err: errors.New("refused")}:
			case <-ctx.Done():
			}
			time.Sleep(checkPause)
		}
	}()
}

// checkPause paces stallEverything's failing checks.
const checkPause = 50 * time.Millisecond

// TestLoopMasterKeepsAdvertInterval: a MASTER sends its adverts every
// advert_int, exactly (synctest's clock), while guard execs, reconciles
// and status reads each stall 3 s.
func TestLoopMasterKeepsAdvertInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, sends := stalledDaemon(t, "150")
		ctx, cancel := context.WithCancel(context.Background())
		checks := make(chan checkResult)
		stallEverything(ctx, d, checks)
		done := make(chan struct{})
		go func() { d.loop(ctx, nil, checks); close(done) }()
		// Master_Down_Interval (3 × 300 ms + skew), then 3 s of adverts.
		time.Sleep(1100*time.Millisecond + 3*time.Second)
		cancel()
		<-done
		time.Sleep(checkPause) // the checks sender ends
		var adverts []time.Time
		for _, s := range sends() {
			if s.prio > 0 {
				adverts = append(adverts, s.at)
			}
		}
		if len(adverts) < 10 {
			t.Fatalf("%d adverts in 3 s as MASTER, want 10 or more", len(adverts))
		}
		for i := 1; i < len(adverts); i++ {
			if gap := adverts[i].Sub(adverts[i-1]); gap != 300*time.Millisecond {
				t.Errorf("advert %d came %s after the one before; want 300ms", i, gap)
			}
		}
	})
}

// TestLoopBackupHearsItsPeer: a BACKUP whose peer advertises every
// advert_int never becomes MASTER while guard execs (its peer MAC learned
// from those adverts), reconciles and status reads each stall 3 s (synctest's clock).
func TestLoopBackupHearsItsPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, sends := stalledDaemon(t, "100")
		ctx, cancel := context.WithCancel(context.Background())
		checks, recv := make(chan checkResult), make(chan received, 8)
		load, unload := context.WithCancel(ctx)
		stallEverything(load, d, checks)
		peer := Advert{VRID: 51, Priority: 150, Interval: 300 * time.Millisecond, Addrs: d.vips}
		go func() {
			for ctx.Err() == nil {
				select {
				case recv <- received{peer, netip.MustParseAddr("192.168.1.213"), mustMAC("02:00:c0:a8:01:d5")}:
				case <-ctx.Done():
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
		done := make(chan struct{})
		go func() { d.loop(ctx, recv, checks); close(done) }()
		time.Sleep(4 * time.Second) // over three Master_Down_Intervals
		// The status client's last read ends within a stall; then ask,
		// without waiting on its mutex (synctest's clock would stand).
		unload()
		time.Sleep(3 * time.Second)
		st, err := d.ask(ctx)
		cancel()
		<-done
		time.Sleep(300 * time.Millisecond) // the peer and the checks sender end
		for _, s := range sends() {
			if s.prio > 0 {
				t.Fatalf("the BACKUP sent an advert at priority %d: it became MASTER while its peer advertised", s.prio)
			}
		}
		if err != nil || st.State != "BACKUP" || st.Guard.PeerMAC != "02:00:c0:a8:01:d5" {
			t.Errorf("status %+v, %v; want BACKUP with the peer MAC learned", st, err)
		}
	})
}

// TestPanicEndsTheLoopAndTearsDown: a panic in any of the daemon's
// goroutines ends the loop with ErrPanic, and the teardown that follows
// removes the IPVS services and the guard.
func TestPanicEndsTheLoopAndTearsDown(t *testing.T) {
	d, _ := stalledDaemon(t, "150")
	fast, ipt := fake.NewIPVS(), fake.NewIPTables()
	d.ipvs, d.ipt, d.crashed = fast, ipt, make(chan error, 1)
	if _, err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if err := d.applyGuard(Master, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- d.loop(context.Background(), nil, nil) }()
	d.spawn(func() { panic("boom") })
	err := <-done
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("loop ended with %v, want ErrPanic with the panic's value", err)
	}
	if err := d.teardown(); err != nil {
		t.Fatal(err)
	}
	if svcs, _ := fast.GetServices(); len(svcs) != 0 {
		t.Errorf("%d IPVS services left after the panic", len(svcs))
	}
	if rules := ipt.Save(GuardTable); strings.Contains(rules, GuardChain) {
		t.Errorf("guard left after the panic:\n%s", rules)
	}
}

// TestAnnouncementsEndWithTheVIP: a gratuitous ARP under way stops when
// the VIPs go. Directors started together may both become MASTER for a
// moment; the one that yields must not go on announcing the VIP, or the
// client sends the peer's traffic to it (seen: 2 of 20 connections broken
// when a yielded BACKUP's announcements outlived its VIP).
func TestAnnouncementsEndWithTheVIP(t *testing.T) {
	d, _ := stalledDaemon(t, "150")
	var held []func() bool
	d.announce = func(_ netip.Addr, h func() bool) { held = append(held, h) }
	if err := d.addVIPs(); err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || !held[0]() {
		t.Fatalf("after addVIPs: %d announcements, held %v; want one, held", len(held), len(held) == 1 && held[0]())
	}
	if err := d.delVIPs(); err != nil {
		t.Fatal(err)
	}
	if held[0]() {
		t.Error("the announcement goes on after delVIPs")
	}
	d.addVIPs()
	if held[0]() || !held[1]() {
		t.Errorf("MASTER again: the old announcement held %v, the new one %v; want false, true", held[0](), held[1]())
	}
}

// TestGARPRefresh: with vrrp.garp_refresh a MASTER announces its VIPs
// again once that long has passed since the last announcement; a BACKUP,
// or a director without it, does not.
func TestGARPRefresh(t *testing.T) {
	d, _ := stalledDaemon(t, "150")
	n := 0
	d.announce = func(netip.Addr, func() bool) { n++ }
	d.fsm.state = Master
	if err := d.addVIPs(); err != nil {
		t.Fatal(err)
	}
	t0 := d.announced
	d.refreshVIPs(t0.Add(time.Hour))
	if n != 1 {
		t.Fatalf("without garp_refresh: %d announcements, want the one of addVIPs", n)
	}
	d.cfg.VRRP.GARPRefresh = 2 * time.Second
	for _, step := range []struct {
		after time.Duration
		state State
		want  int
	}{
		{time.Second, Master, 1},     // too early
		{2 * time.Second, Backup, 1}, // not MASTER
		{2 * time.Second, Master, 2}, // due
		{3 * time.Second, Master, 2}, // 1 s since the last
		{4500 * time.Millisecond, Master, 3},
	} {
		d.fsm.state = step.state
		d.refreshVIPs(t0.Add(step.after))
		if n != step.want {
			t.Fatalf("at +%s as %s: %d announcements, want %d", step.after, step.state, n, step.want)
		}
	}
}
