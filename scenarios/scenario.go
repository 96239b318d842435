package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// Options bound a scenario's workload.
type Options struct {
	Connections int // client connections (default 40)
	Parallel    int // at once (default 8)
	// DialTimeout bounds a read connection's TCP connect: one SYN
	// retransmission (after 1 s) is allowed, a SYN lost in the loop
	// without an ICMP answer (the kernel rate-limits them) is not.
	DialTimeout time.Duration // default 1.5s
	Timeout     time.Duration // per connection: each read and write (default 2s)
	RunDir      string        // for the scenario's lab (default lab.DefaultRunDir)
	CaptureDir  string        // where to write the bridge capture as pcap; "" for none
	// Expected replaces the table's expectation (Expected) for a
	// configuration known to differ, e.g. one that does not balance.
	Expected Verdict
	Progress io.Writer
	// Service is what the workload asks for: MySQL on its port (the
	// default), or a built-in backend on another.
	Service Service
	// Backends are the other services the boxes serve (a pair with
	// several), so that their checkers find every realserver up.
	Backends []Service
	// Rate, when set, paces the read workload: Connections new
	// connections, one every 1/Rate s whatever the earlier ones do (an
	// open loop, as independent clients arrive). Load curves use it.
	Rate int
	// SingleDirector runs the first director only, the second box as a
	// realserver: the load curve's reference.
	SingleDirector bool
	// Bound, when set, bounds the run once its lab is built: the time the
	// lab waited for admission (lab.Admit) before that is not counted.
	Bound time.Duration
	// Unserved says, by fix, why the configs serve no connection, where
	// a plan could tell beforehand (lvslab check: vrrp_strict with no
	// accept): an UNSERVED run names that cause, not the harness.
	Unserved map[Fix]string
}

func (o *Options) defaults() {
	if o.Connections == 0 {
		o.Connections = 40
	}
	if o.Service.Backend == "" {
		o.Service.Backend = BackendMySQL
	}
	if o.Parallel == 0 {
		o.Parallel = 8
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 1500 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Run builds a lab from topo, starts impl with fix on its two directors,
// applies the event to the MASTER, sends the workload (MySQL, or
// opts.Service's) to the VIP from the client, and judges. The lab is torn
// down before it returns.
func Run(ctx context.Context, topo *lab.Topology, impl Implementation, fix Fix, ev Event, opts Options) (_ *Result, err error) {
	opts.defaults()
	e := spec(ev)
	r := &Result{Service: opts.Service.Name, Single: opts.SingleDirector, Scenario: ev, Implementation: impl.Name(), Fix: fix, Expected: cmp.Or(opts.Expected, Expected(fix, ev))}
	c, err := runCluster(topo, impl, opts)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	step := func(what string) {
		fmt.Fprintf(opts.Progress, "lvslab: %s, %s, fix %s: %s at %.1fs\n", ev, impl.Name(), fix, what, time.Since(t0).Seconds())
	}
	l, err := lab.Build(ctx, topo, lab.Options{RunDir: opts.RunDir, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	r.Admission = l.AdmissionWait()
	step(fmt.Sprintf("lab up (%.1fs of it waiting for admission)", r.Admission.Seconds()))
	if opts.Bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Bound)
		defer cancel()
	}
	backends := map[backendKey]*backend{}
	defer func() {
		for _, b := range backends {
			b.stop()
		}
		r.Logs = directorLogs(impl, l, c, err != nil || !r.Pass)
		if cerr := l.Close(); err == nil && cerr != nil {
			err = cerr
		}
		step("lab down")
	}()
	if err := startBackends(l, c, opts, backends); err != nil {
		return nil, err
	}
	startFix := fix
	if e.unfixedStart {
		startFix = FixNone
	}
	if err := StartBoth(ctx, impl, l, c, startFix); err != nil {
		return nil, err
	}
	step("directors started")
	if err := Settle(ctx, l, c, impl, fix); err != nil {
		return nil, err
	}
	step("settled: the MASTER alone holds the VIP, both tables full")
	r.Setup = time.Since(t0)
	client := clientNode(topo)
	rn := running{l: l, c: c, impl: impl, fix: fix, opts: opts, client: client, vip: net.JoinHostPort(c.VIP.String(), fmt.Sprint(c.Port)), backends: backends}
	passive, err := r.apply(ctx, rn, e)
	if err != nil {
		return nil, err
	}
	if e.inject != nil {
		step(string(ev) + " done")
	}
	if err := r.observeTraffic(ctx, rn, e, passive, step); err != nil {
		return nil, err
	}
	r.judge(r.evidence(c, passive.Node, wantServers(rn, e, passive), opts.Unserved[fix]))
	step("judged " + string(r.Verdict))
	return r, nil
}

// runCluster is the cluster a run acts on: topo's, on the port and VIP
// of opts' service, with its MASTER first, and impl's timers.
func runCluster(topo *lab.Topology, impl Implementation, opts Options) (Cluster, error) {
	c, err := NewCluster(topo)
	if err != nil {
		return Cluster{}, err
	}
	if opts.Service.Port != 0 {
		c.Port = opts.Service.Port
	}
	if opts.Service.VIP.IsValid() {
		c.VIP = opts.Service.VIP
	}
	if m := slices.IndexFunc(c.Directors, func(d Director) bool { return d.Node == opts.Service.Master }); m > 0 {
		// Another box is the MASTER of this service's VIP: it starts
		// first, and the events happen to it. The priorities stay in
		// place: the first director's is the highest.
		c.Directors = slices.Clone(c.Directors)
		c.Directors[0], c.Directors[m] = c.Directors[m], c.Directors[0]
		c.Directors[0].Priority, c.Directors[m].Priority = c.Directors[m].Priority, c.Directors[0].Priority
	}
	c.Single = opts.SingleDirector
	if t, ok := impl.(interface{ Timings() Timers }); ok {
		c.Timers = t.Timings()
	}
	return c, nil
}

// startBackends starts the built-in backends of the run's services on
// every realserver, one a port: it listens on every address. The other
// services' first: a UDP backend serves a TCP port too.
func startBackends(l *lab.Lab, c Cluster, opts Options, backends map[backendKey]*backend) error {
	started := map[int]bool{}
	for _, s := range append(slices.Clone(opts.Backends), Service{Port: c.Port, Backend: opts.Service.Backend}) {
		if s.Backend == BackendMySQL || started[s.Port] {
			continue
		}
		started[s.Port] = true
		for _, node := range c.servers() {
			b, err := startBackend(l.Box(node), s.Backend, s.Port, l.ServerID(node))
			if err != nil {
				return err
			}
			backends[backendKey{node, s.Port}] = b
		}
	}
	return nil
}

// wantServers is how many realservers should serve the reads after the
// event: every one, or the active box's own list on a user's pair, less
// one whose servers the event took out.
func wantServers(rn running, e eventSpec, passive Director) int {
	c := rn.c
	n := len(c.servers())
	if ts, ok := rn.impl.(tableSizer); ok { // a user's pair: the active box's own list
		active := c.Directors[0].Node
		if passive.Node == active {
			active = c.Directors[1].Node
		}
		if k := ts.Serving(active, netip.AddrPortFrom(c.VIP, uint16(c.Port))); k > 0 {
			n = k
		}
	}
	if e.serverOut {
		n--
	}
	return n
}

// directorLogs are the directors' logs and, for a run that failed (six
// execs, a second or more under TCG: only when it helps), what each
// director box holds at the end.
func directorLogs(impl Implementation, l *lab.Lab, c Cluster, failed bool) map[string]string {
	logs := impl.Logs()
	if failed {
		for _, d := range c.Directors {
			logs[d.Node+" at the end"] = kernelState(l.Box(d.Node))
		}
	}
	return logs
}

// logTails is the end of each director's log, for an error that happened
// before there was a verdict to carry the logs.
func logTails(impl Implementation) string {
	var out []string
	for node, log := range impl.Logs() {
		out = append(out, node+"'s log: "+lab.Tail(log, 6))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// kernelState is what a director box holds at the end of a scenario, as
// an operator would look: IPVS, and the mangle and nat tables.
func kernelState(box *lab.Box) string {
	var out strings.Builder
	for _, argv := range [][]string{{"ipvsadm", "-Ln"}, {"iptables-save", "-t", "mangle"}, {"iptables-save", "-t", "nat"}} {
		fmt.Fprintf(&out, "$ %s\n", strings.Join(argv, " "))
		if _, err := box.Run(context.Background(), argv, &out, &out); err != nil {
			fmt.Fprintf(&out, "%v\n", err)
		}
	}
	return out.String()
}

// savePcap writes the capture as dir/<scenario>-<implementation>-<fix>
// [-<service>][-one-director][-<rate>ps].pcapng.
func savePcap(dir string, r *Result, frames []Frame, ports map[int]string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s-%s", r.Scenario, r.Implementation, r.Fix)
	if r.Service != "" {
		name += "-" + strings.NewReplacer(" ", "-", ":", "-").Replace(r.Service)
	}
	if r.Single {
		name += "-one-director"
	}
	if r.Rate > 0 {
		name += fmt.Sprintf("-%dps", r.Rate)
	}
	path := filepath.Join(dir, name+".pcapng")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	err = writePcapng(f, frames, ports)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return path, err
}

func clientNode(t *lab.Topology) string {
	for _, n := range t.Nodes {
		if n.HasRole(lab.RoleClient) {
			return n.Name
		}
	}
	return ""
}

// clientAddrs are the addresses of the client node's interfaces: the
// clients the workload stands for.
func clientAddrs(t *lab.Topology, client string) []netip.Addr {
	var out []netip.Addr
	for _, ifc := range t.Node(client).Interfaces {
		for _, p := range ifc.Prefixes() {
			out = append(out, p.Addr())
		}
	}
	return out
}
