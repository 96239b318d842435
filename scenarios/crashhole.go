package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/lvslab/lvslab/lab"
	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// The crash hole: the fwmark guard keeps a box from balancing again what
// the other director forwards, but a hit in IPVS's connection table wins
// over the mark. A director in DR sees one direction only, so a
// connection the client closed stays in its table in FIN_WAIT for two
// minutes, and under conn_reuse_mode 1 (the default) a new connection
// from the same client port goes where the old one went. Kill the MASTER
// (its IPVS state stays), let the BACKUP take over and send a reused
// port to the old MASTER: the old entry sends it back, the new MASTER's
// sends it on, until its TTL runs out. conn_reuse_mode 3 (bit 2: a SYN
// that finds a FIN_WAIT entry of a DR connection reschedules, see
// is_new_conn_expected in ip_vs_core.c) drops the old entry instead; an
// unmarked packet then finds no service and is delivered locally.

// Remedy is what a crash-hole run tries against the hole, on both
// directors before the traffic.
type Remedy string

const (
	// RemedyNone is the mark alone (fwmark-only), the kernel's defaults.
	RemedyNone Remedy = "none"
	// RemedyReuse3 is net.ipv4.vs.conn_reuse_mode=3.
	RemedyReuse3 Remedy = "conn_reuse_mode=3"
	// RemedyPeerRedirect is a nat PREROUTING rule that REDIRECTs to the
	// box's own sockets the VIP traffic the other director forwards: its
	// destination is no longer the VIP when IPVS looks it up, so no entry
	// of the box's table can take it.
	RemedyPeerRedirect Remedy = "peer-redirect"

	// RemedyFinTimeout is IPVS's FIN_WAIT timeout at 1 s instead of 120
	// (ipvsadm --set 0 1 0, keepalived's lvs_timeouts tcpfin 1): the
	// entries a killed MASTER keeps expire before a reused port comes
	// back, unless it comes back within the second.
	RemedyFinTimeout Remedy = "tcpfin=1s"
	// RemedyExpireNodest is net.ipv4.vs.expire_nodest_conn=1: IPVS drops
	// an entry whose destination is no longer available. The killed
	// MASTER's destinations stay, so no effect is expected.
	RemedyExpireNodest Remedy = "expire_nodest_conn=1"
	// RemedyExpireQuiescent is net.ipv4.vs.expire_quiescent_template=1:
	// IPVS drops a persistence template whose destination's weight is
	// 0. The lab's service keeps no templates and the killed MASTER's
	// weights stay: no effect expected.
	RemedyExpireQuiescent Remedy = "expire_quiescent_template=1"
)

// Remedies are the remedies the crash hole is measured with, and
// Candidates others the issue (#24) asked for.
var (
	Remedies   = []Remedy{RemedyNone, RemedyReuse3, RemedyPeerRedirect}
	Candidates = []Remedy{RemedyFinTimeout, RemedyExpireNodest, RemedyExpireQuiescent}
)

// apply puts the remedy in place on director i of c.
func (r Remedy) apply(ctx context.Context, l *lab.Lab, c Cluster, i int) error {
	box := l.Box(c.Directors[i].Node)
	switch r {
	case RemedyReuse3:
		return box.SetSysctls(map[string]string{"net.ipv4.vs.conn_reuse_mode": "3"})
	case RemedyExpireNodest:
		return box.SetSysctls(map[string]string{"net.ipv4.vs.expire_nodest_conn": "1"})
	case RemedyExpireQuiescent:
		return box.SetSysctls(map[string]string{"net.ipv4.vs.expire_quiescent_template": "1"})
	case RemedyFinTimeout:
		return box.Do(func() error {
			h, err := ipvs.New("")
			if err != nil {
				return err
			}
			defer h.Close()
			return h.SetConfig(&ipvs.Config{TimeoutTCPFin: time.Second})
		})
	case RemedyPeerRedirect:
		return iptablesIn(box, func(ipt *iptables.IPTables) error { return appendRedirects(ipt, c.guard(i)) })
	}
	return nil
}

// HoleTrial is one run of the crash hole.
type HoleTrial struct {
	Remedy Remedy
	Ports  int // client ports closed through the MASTER, then reused
	// ToPeer are the ports whose entry in the MASTER's table sent to the
	// BACKUP when it was killed: the ones that can loop.
	ToPeer int
	// Served are the reused ports' connections that got MariaDB's
	// greeting; Looped those that failed with "no route to host", the
	// ICMP time exceeded of their SYN's TTL run out between the
	// directors; Failed the others that failed.
	Served, Looped, Failed int
	// OldMasterPkts is what the old MASTER's IPVS took in while the ports
	// were reused (its live per-CPU counters): nothing, unless it
	// balanced again.
	OldMasterPkts uint32
	// TimeExceeded are the ICMP time exceeded the directors sent then.
	TimeExceeded uint64
}

// Loops reports whether the run shows loop evidence: a reused port's SYN
// ran out of TTL between the directors (no route to host), or a director
// sent ICMP time exceeded.
func (h HoleTrial) Loops() bool { return h.Looped > 0 || h.TimeExceeded > 0 }

func (h HoleTrial) String() string {
	return fmt.Sprintf("%s: %d ports reused, %d of them sent to the BACKUP before the crash; after it %d served, %d looped (no route to host), %d failed otherwise; the old MASTER counted %d packets; %d ICMP time exceeded",
		h.Remedy, h.Ports, h.ToPeer, h.Served, h.Looped, h.Failed, h.OldMasterPkts, h.TimeExceeded)
}

// holePortBase is the first client port the crash hole binds: inside the
// default ephemeral range (32768-60999), as a busy client's ports are.
const holePortBase = 50000

// CrashHole runs the crash hole once on a settled pair impl runs in l,
// with remedy: ports connections from fixed client ports through the
// MASTER, each closed by the client; SIGKILL of the MASTER's director;
// once the BACKUP holds the VIP and the client sends to it, the same
// ports again, at once.
func CrashHole(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, ports int, remedy Remedy) (HoleTrial, error) {
	h := HoleTrial{Remedy: remedy, Ports: ports}
	d1, d2 := c.Directors[0], c.Directors[1]
	for i := range c.Directors {
		if err := remedy.apply(ctx, l, c, i); err != nil {
			return h, err
		}
	}
	client := l.Box(clientNode(l.Topo))
	// The client reuses a port its own TIME_WAIT still holds: as a busy
	// client with tcp_tw_reuse does.
	if err := client.SetSysctls(map[string]string{"net.ipv4.tcp_tw_reuse": "1"}); err != nil {
		return h, err
	}
	src, err := clientAddr(l)
	if err != nil {
		return h, err
	}
	vip := netip.AddrPortFrom(c.VIP, uint16(c.Port))
	for i := range ports {
		if _, err := greet(ctx, client, netip.AddrPortFrom(src, uint16(holePortBase+i)), vip); err != nil {
			return h, fmt.Errorf("port %d through the MASTER: %w", holePortBase+i, err)
		}
	}
	entries, err := connTable(l.Box(d1.Node))
	if err != nil {
		return h, err
	}
	for i := range ports {
		if e, ok := entries[uint16(holePortBase+i)]; ok && e.dest == d2.Addr && e.state == "FIN_WAIT" {
			h.ToPeer++
		}
	}
	if _, err := killForClient(ctx, l, c, impl); err != nil {
		return h, fmt.Errorf("after the kill: %w", err)
	}
	before, err := liveInPkts(l.Box(d1.Node))
	if err != nil {
		return h, err
	}
	teBefore := timeExceeded(l, c)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := greet(ctx, client, netip.AddrPortFrom(src, uint16(holePortBase+i)), vip)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				h.Served++
			case errors.Is(err, unix.EHOSTUNREACH):
				h.Looped++
			default:
				h.Failed++
			}
		}()
	}
	wg.Wait()
	after, err := liveInPkts(l.Box(d1.Node))
	if err != nil {
		return h, err
	}
	h.OldMasterPkts = uint32(after - before)
	h.TimeExceeded = timeExceeded(l, c) - teBefore
	return h, nil
}

// crashReuse is CrashReuse's injection: each client port of the reads
// (holePortBase on, from the client's addresses in turn, as Reads takes
// them) connects through the MASTER and closes, the client first; then
// the MASTER's director is SIGKILLed (killForClient).
func crashReuse(ctx context.Context, r *Result, rn running) (func() error, error) {
	l, c := rn.l, rn.c
	client := l.Box(rn.client)
	if err := client.SetSysctls(map[string]string{"net.ipv4.tcp_tw_reuse": "1"}); err != nil {
		return nil, err
	}
	vip := netip.AddrPortFrom(c.VIP, uint16(c.Port))
	from := clientAddrs(l.Topo, rn.client)
	var errs []error // a pair that loops already fails some: what matters is the entries the others leave
	for i := range rn.opts.Connections {
		src := netip.AddrPortFrom(from[i%len(from)], holePortBase+uint16(i))
		if _, err := greet(ctx, client, src, vip); err != nil {
			errs = append(errs, fmt.Errorf("port %s through the MASTER: %w", src, err))
		}
	}
	if len(errs) == rn.opts.Connections {
		return nil, errors.Join(errs...)
	}
	var err error
	r.Failover, err = killForClient(ctx, l, c, rn.impl)
	return nil, err
}

// killForClient SIGKILLs the MASTER's director, times until the BACKUP
// holds the VIP, and waits until the client's ARP entry names it: what
// the client sends then reaches the new MASTER, as the crash hole needs.
func killForClient(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation) (time.Duration, error) {
	took, err := TimeVIPTakeover(ctx, l.Box(c.Directors[1].Node), c, func() error { return impl.Stop(0, false) })
	if err != nil {
		return took, err
	}
	client := l.Box(clientNode(l.Topo))
	return took, waitPair(ctx, impl, c.takeoverBound(), func() string { return neighbourIs(client, c.VIP, c.Directors[1].MAC) })
}

// portBase is where e's reads bind their client ports: holePortBase
// when they reuse ports, else 0 (any).
func (e eventSpec) portBase() uint16 {
	if e.reusesPorts {
		return holePortBase
	}
	return 0
}

// clientAddr is the client node's first address.
func clientAddr(l *lab.Lab) (netip.Addr, error) {
	ifc := l.Topo.Node(clientNode(l.Topo)).Interfaces[0]
	if len(ifc.Addresses) == 0 {
		return netip.Addr{}, fmt.Errorf("the client has no address")
	}
	p, err := netip.ParsePrefix(ifc.Addresses[0])
	return p.Addr(), err
}

// greet connects from src to dst, reads MariaDB's greeting and closes,
// the client first (a FIN, which a DR director's table keeps as
// FIN_WAIT).
func greet(ctx context.Context, box *lab.Box, src, dst netip.AddrPort) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := box.DialFromPort(src)(dctx, "tcp", dst.String())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// Read the greeting, then close the client's half first (a FIN) and
	// read to the server's: a close with unread data would send a reset,
	// which IPVS keeps as CLOSE, not FIN_WAIT.
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1024)
	n, err := conn.Read(buf)
	if err != nil {
		return n, err
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return n, err
	}
	_, err = io.Copy(io.Discard, conn)
	return n, err
}

// connEntry is one connection of IPVS's table, as /proc/net/ip_vs_conn
// shows it.
type connEntry struct {
	dest  netip.Addr
	state string
}

// connTable reads box's IPVS connections by client port.
func connTable(box *lab.Box) (map[uint16]connEntry, error) {
	var data []byte
	err := box.Do(func() (err error) { data, err = os.ReadFile("/proc/thread-self/net/ip_vs_conn"); return err })
	if err != nil {
		return nil, err
	}
	out := map[uint16]connEntry{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] != "TCP" {
			continue
		}
		port, err1 := strconv.ParseUint(f[2], 16, 16)
		dest, err2 := strconv.ParseUint(f[5], 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out[uint16(port)] = connEntry{dest: netip.AddrFrom4([4]byte{byte(dest >> 24), byte(dest >> 16), byte(dest >> 8), byte(dest)}), state: f[7]}
	}
	return out, sc.Err()
}

// liveInPkts is the packets box's IPVS has taken in, summed over its
// CPUs as /proc/net/ip_vs_stats_percpu counts them now. The counters
// netlink reads are the estimator's, refreshed every 2 s: read just
// after a sub-second takeover, they may still lack the last traffic.
func liveInPkts(box *lab.Box) (uint64, error) {
	var data []byte
	err := box.Do(func() (err error) { data, err = os.ReadFile("/proc/thread-self/net/ip_vs_stats_percpu"); return err })
	if err != nil {
		return 0, err
	}
	return sumInPkts(data)
}

// sumInPkts sums the incoming packets of ip_vs_stats_percpu's CPU lines
// ("%3X %8LX %8LX ...": the CPU, then conns, in packets, ... in hex),
// leaving out the headers, the estimator's total ("~") and the rates.
func sumInPkts(data []byte) (uint64, error) {
	var n uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 {
			continue
		}
		if _, err := strconv.ParseUint(f[0], 16, 32); err != nil {
			continue
		}
		pkts, err := strconv.ParseUint(f[2], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("ip_vs_stats_percpu: %q: %w", sc.Text(), err)
		}
		n += pkts
	}
	return n, sc.Err()
}

// neighbourIs says why box's neighbour entry for ip is not mac, or "".
func neighbourIs(box *lab.Box, ip netip.Addr, mac net.HardwareAddr) string {
	neighs, err := box.Netlink().NeighList(0, unix.AF_INET)
	if err != nil {
		return err.Error()
	}
	for _, n := range neighs {
		if n.IP.Equal(ip.AsSlice()) {
			if n.HardwareAddr.String() == mac.String() {
				return ""
			}
			return fmt.Sprintf("the client still sends %s to %s", ip, n.HardwareAddr)
		}
	}
	return "the client has no neighbour entry for " + ip.String()
}

// timeExceeded sums the ICMP time exceeded the directors have sent.
func timeExceeded(l *lab.Lab, c Cluster) uint64 {
	var n uint64
	for _, d := range c.Directors {
		te, _ := TimeExceeded(l.Box(d.Node))
		n += te
	}
	return n
}
