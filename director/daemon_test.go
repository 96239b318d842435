package director

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/lvslab/lvslab/director/internal/fake"
)

// fakeNetlink serves a fixed neighbour table; the daemon's other netlink
// calls are not used by the code under test here.
type fakeNetlink struct {
	Netlink
	neighs []netlink.Neigh
}

func (f *fakeNetlink) NeighList(int, int) ([]netlink.Neigh, error) { return f.neighs, nil }

// TestLookForPeer: a MASTER without peer_mac takes its BACKUP's MAC from
// the neighbour entry of the one realserver that is not itself, and
// guesses nothing otherwise.
func TestLookForPeer(t *testing.T) {
	d1MAC, d2MAC := mustMAC("02:00:c0:a8:01:e9"), mustMAC("02:00:c0:a8:01:d5")
	neigh := func(ip string, state int, mac net.HardwareAddr) netlink.Neigh {
		return netlink.Neigh{IP: net.ParseIP(ip), State: state, HardwareAddr: mac}
	}
	third := strings.Replace(baseConfig, "      - address: 192.168.1.213", "      - address: 192.168.1.213\n      - address: 192.168.1.50", 1)
	for _, tc := range []struct {
		name   string
		config string
		neighs []netlink.Neigh
		want   net.HardwareAddr
	}{
		{"the other realserver resolved", baseConfig, []netlink.Neigh{neigh("192.168.1.100", netlink.NUD_REACHABLE, d1MAC), neigh("192.168.1.213", netlink.NUD_STALE, d2MAC)}, d2MAC},
		{"not resolved yet", baseConfig, []netlink.Neigh{neigh("192.168.1.213", netlink.NUD_INCOMPLETE, nil)}, nil},
		{"resolution failed", baseConfig, []netlink.Neigh{neigh("192.168.1.213", netlink.NUD_FAILED, d2MAC)}, nil},
		{"two candidates: no guess", third, []netlink.Neigh{neigh("192.168.1.213", netlink.NUD_REACHABLE, d2MAC)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("c.yaml", []byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			ipt := fake.NewIPTables()
			d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), nl: &fakeNetlink{neighs: tc.neighs}, ipt: ipt,
				ifi: &net.Interface{Index: 2, Name: "eth0"}, addr: netip.MustParsePrefix("192.168.1.233/24"),
				vips: []netip.Addr{netip.MustParseAddr("192.168.1.200")}, work: newWorker(goSpawn)}
			defer d.work.close()
			d.lookForPeer()
			d.work.flush()
			if string(d.peerMAC) != string(tc.want) {
				t.Fatalf("peer MAC %v, want %v", d.peerMAC, tc.want)
			}
			rules := ipt.Save(GuardTable)
			if tc.want != nil && (d.peerFrom != "neighbour" || !strings.Contains(rules, "! --mac-source "+tc.want.String())) {
				t.Errorf("from %q, rules:\n%s", d.peerFrom, rules)
			}
			if tc.want == nil && strings.Contains(rules, GuardChain) {
				t.Errorf("a BACKUP that knows no peer marks nothing, got:\n%s", rules)
			}
		})
	}
}

// TestApplyGuardOnce: the guard is checked with iptables only when the
// rule to be in force changes, not on every VRRP transition (each check
// is several iptables execs, on the VRRP loop).
func TestApplyGuardOnce(t *testing.T) {
	cfg, err := ParseConfig("c.yaml", []byte(baseConfig))
	if err != nil {
		t.Fatal(err)
	}
	ipt := fake.NewIPTables()
	d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), ipt: ipt}
	peer := mustMAC("02:00:c0:a8:01:d5")
	if err := d.applyGuard(Backup, peer); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ipt.Save(GuardTable), "! --mac-source 02:00:c0:a8:01:d5") {
		t.Fatalf("no guard:\n%s", ipt.Save(GuardTable))
	}
	calls, reads := ipt.Calls, ipt.Reads
	if err := d.applyGuard(Master, peer); err != nil || ipt.Calls != calls || ipt.Reads != reads {
		t.Errorf("unchanged rule: %v, %d calls and %d reads; want none", err, ipt.Calls-calls, ipt.Reads-reads)
	}
	if err := d.applyGuard(Backup, mustMAC("02:00:c0:a8:01:d6")); err != nil || !strings.Contains(ipt.Save(GuardTable), "! --mac-source 02:00:c0:a8:01:d6") {
		t.Errorf("a new peer MAC: %v, rules:\n%s", err, ipt.Save(GuardTable))
	}
	// a BACKUP that knows no peer marks nothing
	if err := d.applyGuard(Backup, nil); err != nil || strings.Contains(ipt.Save(GuardTable), GuardChain) {
		t.Errorf("no peer MAC: %v, rules:\n%s", err, ipt.Save(GuardTable))
	}
}

func goSpawn(fn func()) { go fn() }

// TestPeerRedirect: with the peer's MAC known, the fwmark guard has the
// peer REDIRECT beside it in nat PREROUTING (guard.redirect_peer, on by
// default), in every state, and none without the MAC; redirect_peer:
// false leaves the guard alone; the teardown removes both chains.
func TestPeerRedirect(t *testing.T) {
	peer := mustMAC("02:00:c0:a8:01:d5")
	want := "-A LVSLAB-REDIRECT -d 192.168.1.200/32 -p tcp --dport 3306 -m mac --mac-source 02:00:c0:a8:01:d5 -j REDIRECT"
	for _, tc := range []struct {
		name     string
		config   string
		redirect bool
	}{
		{"by default", baseConfig, true},
		{"switched off", strings.Replace(baseConfig, "  mark: 3", "  mark: 3\n  redirect_peer: false", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("c.yaml", []byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			ipt := fake.NewIPTables()
			d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), ipt: ipt, ipvs: fake.NewIPVS(), work: newWorker(goSpawn)}
			for _, state := range []State{Backup, Master} {
				if err := d.applyGuard(state, peer); err != nil {
					t.Fatal(err)
				}
				nat := ipt.Save("nat")
				if got := strings.Contains(nat, want) && strings.Contains(nat, "-A PREROUTING -j LVSLAB-REDIRECT"); got != tc.redirect {
					t.Errorf("%s: redirect %v, want %v:\n%s", state, got, tc.redirect, nat)
				}
				if !strings.Contains(ipt.Save(GuardTable), "! --mac-source 02:00:c0:a8:01:d5") {
					t.Errorf("%s: no guard:\n%s", state, ipt.Save(GuardTable))
				}
			}
			if err := d.applyGuard(Backup, nil); err != nil || strings.Contains(ipt.Save("nat"), RedirectChain) {
				t.Errorf("no peer MAC: %v, nat:\n%s", err, ipt.Save("nat"))
			}
			if err := d.applyGuard(Backup, peer); err != nil {
				t.Fatal(err)
			}
			if err := d.teardown(); err != nil {
				t.Fatal(err)
			}
			if rules := ipt.Save("nat") + ipt.Save(GuardTable); strings.Contains(rules, RedirectChain) || strings.Contains(rules, GuardChain) {
				t.Errorf("after the teardown:\n%s", rules)
			}
		})
	}
	if _, err := ParseConfig("c.yaml", []byte(strings.NewReplacer("  mode: fwmark", "  mode: backup-only", "  mark: 3", "  redirect_peer: true").Replace(baseConfig))); err == nil || !strings.Contains(err.Error(), "redirect_peer is only for mode fwmark") {
		t.Errorf("redirect_peer under backup-only: %v", err)
	}
}

// TestHeardLearnsOnlyFromPeers: the guard takes the peer MAC from adverts
// of the other director's address only; an advert from any other host
// (unauthenticated VRRP) changes nothing.
func TestHeardLearnsOnlyFromPeers(t *testing.T) {
	cfg, err := ParseConfig("c.yaml", []byte(baseConfig))
	if err != nil {
		t.Fatal(err)
	}
	ipt := fake.NewIPTables()
	d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), ipt: ipt, work: newWorker(goSpawn),
		addr: netip.MustParsePrefix("192.168.1.233/24"), vips: []netip.Addr{netip.MustParseAddr("192.168.1.200")}}
	defer d.work.close()
	intruder, peer := mustMAC("02:00:00:00:00:66"), mustMAC("02:00:c0:a8:01:d5")
	d.heard(received{src: netip.MustParseAddr("192.168.1.66"), mac: intruder})
	d.work.flush()
	if d.peerMAC != nil || strings.Contains(ipt.Save(GuardTable), intruder.String()) {
		t.Fatalf("learned %v from a host that is no realserver; rules:\n%s", d.peerMAC, ipt.Save(GuardTable))
	}
	d.heard(received{src: netip.MustParseAddr("192.168.1.213"), mac: peer})
	d.work.flush()
	if d.peerFrom != "adverts" || !strings.Contains(ipt.Save(GuardTable), "! --mac-source "+peer.String()) {
		t.Errorf("the peer's advert: from %q, rules:\n%s", d.peerFrom, ipt.Save(GuardTable))
	}
}

// The fakes stand in for the kernel's IPVS and iptables.
var (
	_ IPVS     = (*fake.IPVS)(nil)
	_ IPTables = (*fake.IPTables)(nil)
)

// TestSyncDaemonsFollowAndRetry: under guard backup-only the sync daemons
// follow the VRRP state the box is in when the worker gets to them (the
// stale switches of a flap are skipped), and a switch the kernel failed
// is retried until it holds.
func TestSyncDaemonsFollowAndRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := ParseConfig("c.yaml", []byte(baseConfig))
		if err != nil {
			t.Fatal(err)
		}
		var switched []SyncState
		failures := 2
		d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), work: newWorker(goSpawn), switchSync: func(sd SyncDaemon) error {
			if failures > 0 {
				failures--
				return errors.New("stop master sync daemon: resource temporarily unavailable")
			}
			switched = append(switched, sd.State)
			return nil
		}}
		// MASTER, then BACKUP again, before the worker ran either switch.
		for _, s := range []State{Master, Backup} {
			d.wantSync.Store(int32(s))
			d.work.do(d.syncDaemons)
		}
		time.Sleep(10 * time.Second) // past the retries
		synctest.Wait()
		d.work.close()
		if !slices.Equal(switched, []SyncState{SyncBackup}) || failures != 0 {
			t.Errorf("switched to %v after %d failures left; want the backup daemon alone, after the 2 failures", switched, failures)
		}
	})
}

// TestGARPFrame: the announcement decodes as one: a broadcast ARP
// request from the box's MAC whose sender and target address are the VIP.
func TestGARPFrame(t *testing.T) {
	mac, vip := mustMAC("02:00:c0:a8:01:e9"), netip.MustParseAddr("192.168.1.200")
	frame, err := garpFrame(mac, vip)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil || eth.DstMAC.String() != "ff:ff:ff:ff:ff:ff" || eth.SrcMAC.String() != mac.String() ||
		arp.Operation != layers.ARPRequest || net.HardwareAddr(arp.SourceHwAddress).String() != mac.String() ||
		net.IP(arp.SourceProtAddress).String() != "192.168.1.200" || net.IP(arp.DstProtAddress).String() != "192.168.1.200" {
		t.Errorf("frame %x decodes as %v", frame, p)
	}
}

func mustMAC(s string) net.HardwareAddr {
	mac, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return mac
}
