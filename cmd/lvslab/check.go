package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/pflag"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/lab/runenv"
	"github.com/lvslab/lvslab/reports"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/check"
)

// checkEvents are the events lvslab check runs by default.
var checkEvents = []scenarios.Event{scenarios.Steady, scenarios.FailoverStop, scenarios.FailoverKill,
	scenarios.Switchover, scenarios.Failback, scenarios.MySQLDown}

// checkJobs is how many of check's runs go at once, each in its own lab.
const checkJobs = 6

// maxCheckConnections bounds --connections: each run opens that many
// connections through the lab.
const maxCheckConnections = 10000

// checkJob is a pair of configs read and planned: what cmdCheck and, for
// --keep in a micro-VM, the agent both derive from check's arguments:
// the pair, its lab, its fix, and the two ways the lab runs it (with the
// mappings that takes), with self (this binary) as the probe.
type checkJob struct {
	// bundles are what lvslab collect's bundles gave, where the boxes
	// came as bundles (nil: as configs).
	bundles           *bundleInputs
	p                 *check.Pair
	pl                *check.Plan
	rx                *check.Prescription
	self              string
	yours, prescribed func() scenarios.Implementation
	mappings          []check.Mapping
}

// checkPairFlags are the flags that say what the pair is.
type checkPairFlags struct {
	rules, macs, addrs, ports []string
	scripts                   string
}

func addCheckPairFlags(fs *pflag.FlagSet) *checkPairFlags {
	f := &checkPairFlags{}
	fs.StringArrayVar(&f.rules, "iptables", nil, "a box's iptables rules (iptables-save output or iptables commands); give it once per config, in their order")
	fs.StringArrayVar(&f.macs, "mac", nil, "BOX=MAC: a box's MAC (d1, d2, ...: the configs in order; default 02:00 and its IPv4 address)")
	fs.StringArrayVar(&f.addrs, "addr", nil, "BOX=IP: a box's own address, where the configs do not say (no unicast_src_ip or unicast_peer)")
	fs.StringArrayVar(&f.ports, "port", nil, "MARK=PORT: a port a fwmark service takes, when no --iptables rule says")
	fs.StringVar(&f.scripts, "scripts", "", "DIR: your scripts, as in the directory your configs name (e.g. a copy of /etc/keepalived): notify and vrrp_script scripts found there run in the lab, / read-only to them")
	return f
}

// args are f's flags and the configs again, paths made absolute: for the
// agent to plan the pair in the micro-VM, whose working directory is not
// this one.
func (f *checkPairFlags) args(configs []string) []string {
	abs := func(p string) string {
		a, _ := filepath.Abs(p)
		return a
	}
	var out []string
	for _, r := range f.rules {
		out = append(out, "--iptables", abs(r))
	}
	for flag, vs := range map[string][]string{"mac": f.macs, "addr": f.addrs, "port": f.ports} {
		for _, v := range vs {
			out = append(out, "--"+flag, v)
		}
	}
	if f.scripts != "" {
		out = append(out, "--scripts", abs(f.scripts))
	}
	for _, c := range configs {
		out = append(out, abs(c))
	}
	return out
}

// plan reads the pair the two configs and f name, derives its lab and
// writes its fix; errors are bad input (exit 2).
func (f *checkPairFlags) plan(configs []string) (*checkJob, error) {
	if len(configs) > check.MaxBoxes {
		return nil, &exitError{2, fmt.Errorf("%d configs, so %d boxes: lvslab check runs two to %d boxes", len(configs), len(configs), check.MaxBoxes)}
	}
	if len(configs) < 2 {
		return nil, usageError("want: lvslab check [flags] BOX1.conf BOX2.conf [BOX3.conf [BOX4.conf]]")
	}
	var bundles *bundleInputs
	if slices.ContainsFunc(configs, isBundle) {
		var err error
		if bundles, err = f.fromBundles(configs); err != nil {
			return nil, err
		}
		configs = bundles.configs
	}
	if len(f.rules) != 0 && len(f.rules) != len(configs) {
		return nil, usageError("--iptables: give it once per config (box 1's rules, then box 2's, ...) or not at all")
	}
	p, err := check.LoadPair(configs, f.rules)
	if err != nil {
		return nil, &exitError{2, err} // a config or rules file we cannot read or parse
	}
	if err := boxFlags(p, f.macs, f.addrs, f.ports); err != nil {
		return nil, err
	}
	if f.scripts != "" {
		if fi, err := os.Stat(f.scripts); err != nil || !fi.IsDir() {
			return nil, usageError("--scripts %s: want a directory (a copy of the one your configs name, e.g. /etc/keepalived)", f.scripts)
		}
		p.Scripts = f.scripts
	}
	j := &checkJob{p: p}
	j.bundles = bundles
	if j.pl, err = check.Derive(p); err != nil {
		return nil, &exitError{2, err}
	}
	if j.rx, err = check.Prescribe(p, j.pl); err != nil {
		return nil, &exitError{2, err}
	}
	if j.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if j.yours, j.prescribed, j.mappings, err = check.Runs(p, j.pl, j.rx, j.self); err != nil {
		return nil, &exitError{2, err}
	}
	return j, nil
}

// cmdCheck reads the user's pair of keepalived configs, derives the lab
// for it, writes the fix for it, and runs the lab through the events with
// their configs and with the fix; or, with --keep, leaves the pair's lab
// running with one of the two.
func cmdCheck(args []string) error {
	fs := newFlags("check")
	pf := addCheckPairFlags(fs)
	o := addCheckFlags(fs)
	v := addVMFlags(fs, false, 4096)
	if err := parse(fs, args); err != nil {
		return err
	}
	evs, err := o.validate()
	if err != nil {
		return err
	}
	j, err := pf.plan(fs.Args())
	if err != nil {
		return err
	}
	if j.bundles != nil {
		defer os.RemoveAll(j.bundles.tmp)
		j.bundles.kernel = j.bundles.vmKernel(v, kernel.List())
	}
	if o.fixed != "" {
		if err := writeFixed(o.fixed, o.force, j.p, j.pl, j.rx); err != nil {
			return err
		}
	}
	text, err := j.account(o)
	if err != nil {
		return err
	}
	unrunnable := j.pl.Runnable()
	switch {
	case o.plan && !j.rx.Nothing():
		return &exitError{code: 1} // something to fix; explained above
	case o.plan:
		return nil
	case unrunnable != "":
		return &exitError{2, fmt.Errorf("cannot run this pair in the lab yet: %s (--plan: the lab and the fix without a run)", unrunnable)}
	case os.Geteuid() != 0:
		return &exitError{2, fmt.Errorf("running the lab needs root (--plan: the lab and the fix without a run)")}
	case o.keep != "":
		return keepCheck(j, o, pf.args(fs.Args()), v)
	}
	info, dir, id, started, err := startRun(o.mode, o.reportDir, o.runID)
	if err != nil {
		return err
	}
	if info.Mode == kernel.VM {
		fmt.Fprintf(os.Stderr, "\nlvslab: %s: running the lab in a micro-VM\n", info.Reason)
		// The same arguments (flags may lie among the configs), the run's
		// own flags last: the last of a flag given twice wins.
		argv := append([]string{j.self, "check"}, args...)
		return reportInVM(v, append(argv, "--kernel", kernel.Native, "--reports", dir, "--run-id", id, "--write-fixed", ""), dir)
	}
	sum := &reports.Summary{RunID: id, Started: started, Kernel: kernel.Release(), Runner: kernel.CurrentRunner(),
		Findings: scenarios.Findings, YourConfig: text}
	return j.run(sum, evs, o.conns, dir)
}

// checkOpts are check's own flags (beside the pair's and the VM's).
type checkOpts struct {
	fixed, events, keep, reportDir, mode, runID string
	force, asJSON, plan                         bool
	conns                                       int
	name, runDir                                *string // the lab's (labFlags)
}

func addCheckFlags(fs *pflag.FlagSet) *checkOpts {
	o := &checkOpts{}
	fs.StringVar(&o.fixed, "write-fixed", "", "write each box's fixed config files and iptables-restore rules under DIR/d1, DIR/d2, ...")
	fs.BoolVar(&o.force, "force", false, "with --write-fixed: write into a DIR that is not empty or is a system directory, replacing files")
	fs.BoolVar(&o.asJSON, "json", false, "print the parsed configs, the derived lab and the prescription as JSON")
	fs.BoolVar(&o.plan, "plan", false, "derive the lab and write the fix, but do not run it")
	fs.StringVar(&o.events, "events", "", "the events to run, comma-separated (default: all of "+eventNames(checkEvents)+"; also "+eventNames(scenarios.Adversity)+")")
	fs.IntVar(&o.conns, "connections", 20, "client connections per run")
	fs.StringVar(&o.keep, "keep", "", "run no events: leave the pair's lab up, VRRP settled, with your configs (yours) or the prescription (prescribed); then lvslab watch, exec, down")
	fs.StringVar(&o.reportDir, "reports", "reports", "where reports/<run-id>/ and reports/latest go")
	fs.StringVar(&o.mode, "kernel", "", "where the lab runs: native or vm (default $LVSLAB_KERNEL, else automatic)")
	fs.StringVar(&o.runID, "run-id", "", "the run's name under --reports (default: its start time)")
	o.name, o.runDir = labFlags(fs)
	return o
}

// validate checks the flags' values and returns the events to run.
func (o *checkOpts) validate() ([]scenarios.Event, error) {
	evs, err := parseEvents(o.events)
	if err != nil {
		return nil, err
	}
	if o.conns < 1 || o.conns > maxCheckConnections {
		return nil, usageError("--connections %d: want 1 to %d", o.conns, maxCheckConnections)
	}
	if o.keep != "" && o.keep != "yours" && o.keep != "prescribed" {
		return nil, usageError("--keep %q: want yours or prescribed", o.keep)
	}
	return evs, nil
}

// account prints what check found (the diagnosis of bundles, the
// pair, the lab, the fix, what keepalived -t says), as text or JSON, and
// returns the text: the report's "your configuration".
func (j *checkJob) account(o *checkOpts) (string, error) {
	p, pl, rx := j.p, j.pl, j.rx
	says, err := check.KeepalivedSays(p, pl, j.yours)
	if err != nil {
		return "", err
	}
	var account strings.Builder
	printDiagnosis(&account, j)
	printCheck(&account, p, pl, rx, says, o.fixed)
	text := account.String()
	if j.bundles != nil { // the unpacked copies' paths as on the boxes
		text = j.bundles.onBoxes(text)
	}
	if why := pl.Runnable(); why != "" {
		text += fmt.Sprintf("\nThe lab cannot run this pair yet: %s\n", why)
	}
	if o.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return text, enc.Encode(map[string]any{"configs": p.Configs, "plan": pl, "prescription": rx, "keepalived_says": says})
	}
	if !runenv.InMicroVM() { // the host printed it already
		fmt.Print(text)
	}
	return text, nil
}

// run runs the pair's lab through evs twice, with their configs and with
// the prescription, into sum, writes the report under dir and prints the
// matrix.
func (j *checkJob) run(sum *reports.Summary, evs []scenarios.Event, conns int, dir string) error {
	p, pl, rx := j.p, j.pl, j.rx
	m1 := slices.Clone(j.mappings)
	evs, skipped := pl.Events(p, evs)
	if slices.Contains(evs, scenarios.Switchover) {
		m1 = append(m1, check.Mapping{Box: pl.Backup(), From: "priority", To: fmt.Sprint(pl.SwitchoverPriority(p)),
			Why: "vrrp-switchover: the BACKUP restarts with a priority above the MASTER's written into its config"})
	}
	var labNotes strings.Builder
	for _, m := range m1 {
		fmt.Fprintf(&labNotes, "  %-3s %s -> %s: %s\n", m.Box, m.From, m.To, m.Why)
	}
	for _, s := range skipped {
		fmt.Fprintf(&labNotes, "  %s\n", s)
	}
	if labNotes.Len() > 0 {
		sum.YourConfig += "\nTo run in the lab\n" + labNotes.String()
		fmt.Print("\nTo run in the lab\n" + labNotes.String())
	}
	// The fix column says which configs ran: as given, or prescribed; a
	// pair with several services runs every event for each.
	svcs := pl.Workloads()
	var cells []scenarios.Cell
	for _, run := range []struct {
		impl func() scenarios.Implementation
		fix  scenarios.Fix
	}{{j.yours, "yours"}, {j.prescribed, "prescribed"}} {
		for k := range svcs {
			for _, ev := range evs {
				c := scenarios.Cell{Impl: run.impl, Event: ev, Fix: run.fix}
				if len(svcs) > 1 {
					c.Service = &svcs[k]
				}
				cells = append(cells, c)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Every cell should be CLEAN: a LOOP or NO-BALANCE is what to fix.
	opts := scenarios.Options{Connections: conns, Expected: scenarios.Clean, Service: svcs[0], Backends: pl.Backends(),
		Unserved: map[scenarios.Fix]string{"yours": rx.Unserved}}
	var serial time.Duration // the runs' time, one after the other
	timers := check.Timers(p)
	for _, ev := range evs {
		serial += timers.Estimate(ev) * time.Duration(2*len(svcs))
	}
	fmt.Fprintf(os.Stderr, "\nlvslab check: %d runs (%d events × %d service(s), your configs and prescribed), about %s of lab time, %d at once (--events for fewer)\n",
		len(cells), len(evs), len(svcs), serial.Round(time.Minute), checkJobs)
	sum.Assumed = pl.Assumptions(m1...)
	if err := runCells(ctx, sum, scenarios.Matrix{Topo: pl.Topology, Cells: cells, Repeat: 1, Jobs: checkJobs, Options: opts}, dir); err != nil {
		return err
	}
	if !sum.Pass() {
		return &exitError{code: 1, err: fmt.Errorf("a run was not CLEAN")}
	}
	return nil
}

// parseEvents reads --events.
func parseEvents(s string) ([]scenarios.Event, error) {
	if s == "" {
		return checkEvents, nil
	}
	var out []scenarios.Event
	for _, e := range strings.Split(s, ",") {
		if !slices.Contains(checkEvents, scenarios.Event(e)) && !slices.Contains(scenarios.Adversity, scenarios.Event(e)) {
			return nil, usageError("--events: %q: want some of %s, %s", e, eventNames(checkEvents), eventNames(scenarios.Adversity))
		}
		if slices.Contains(out, scenarios.Event(e)) {
			return nil, usageError("--events: %s given twice", e)
		}
		out = append(out, scenarios.Event(e))
	}
	return out, nil
}

func eventNames(evs []scenarios.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e))
	}
	return strings.Join(s, ",")
}

// boxFlags applies --mac, --addr and --port.
func boxFlags(p *check.Pair, macs, addrs, ports []string) error {
	box := func(flag, v string) (int, string, error) {
		b, val, ok := strings.Cut(v, "=")
		i := -1
		for k := range p.Paths {
			if b == fmt.Sprintf("d%d", k+1) {
				i = k
			}
		}
		if !ok || i < 0 {
			return 0, "", usageError("--%s %q: want d1=VALUE to d%d=VALUE, a box in the configs' order", flag, v, len(p.Paths))
		}
		return i, val, nil
	}
	for _, v := range macs {
		i, val, err := box("mac", v)
		if err != nil {
			return err
		}
		if p.MACs[i], err = net.ParseMAC(val); err != nil {
			return usageError("--mac %q: %v", v, err)
		}
	}
	for _, v := range addrs {
		i, val, err := box("addr", v)
		if err != nil {
			return err
		}
		if p.Addrs[i], err = netip.ParseAddr(val); err != nil {
			return usageError("--addr %q: %v", v, err)
		}
	}
	for _, v := range ports {
		m, port, ok := strings.Cut(v, "=")
		mark, err1 := strconv.ParseUint(m, 0, 32)
		n, err2 := strconv.ParseUint(port, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return usageError("--port %q: want MARK=PORT", v)
		}
		p.Ports[uint32(mark)] = append(p.Ports[uint32(mark)], uint16(n))
	}
	return nil
}

func printCheck(w io.Writer, p *check.Pair, pl *check.Plan, rx *check.Prescription, says [][]string, fixed string) {
	fmt.Fprintf(w, "Your configuration\n")
	for i, c := range p.Configs {
		fmt.Fprintf(w, "  %s: %s (%d file(s)): %d vrrp_instance, %d virtual_server, %d keyword(s) kept as written (--json lists them)\n",
			pl.Boxes[i].Node, p.Paths[i], len(c.Files), len(c.Instances), len(c.VirtualServers), len(c.Unmodelled))
		for _, l := range says[i] {
			fmt.Fprintf(w, "    keepalived -t: %s\n", l)
		}
	}
	if slices.ContainsFunc(says, func(s []string) bool { return len(s) > 0 }) {
		fmt.Fprintf(w, "  (keepalived runs the configs in spite of these, as the lab does: the verdicts are of what it makes of them)\n")
	}
	fmt.Fprintf(w, "\nThe lab for it\n  bridge lan %s; clients %s to %s\n", pl.Subnet, pl.Clients[len(pl.Clients)-1], pl.Clients[0])
	for _, v := range pl.VIPs {
		if !pl.Subnet.Contains(v.Addr()) {
			fmt.Fprintf(w, "  VIP %s reached by a route on the bridge (see Mappings)\n", v.Addr())
		}
	}
	for _, b := range pl.Boxes {
		fmt.Fprintf(w, "  %s %s %s, %s priority %d\n", b.Node, b.Addr, b.MAC, b.State, b.Priority)
	}
	for _, a := range pl.Realservers {
		fmt.Fprintf(w, "  realserver %s\n", a)
	}
	for _, a := range pl.Unreachable {
		fmt.Fprintf(w, "  realserver %s, unreachable (not on the bridge: see Mappings)\n", a)
	}
	for _, s := range pl.Services {
		fmt.Fprintf(w, "  service %s -> %s ports %v, lb_kind %s\n", s.Key, s.VIP, s.Ports, s.Kind)
	}
	for _, d := range pl.Differences {
		fmt.Fprintf(w, "  the boxes differ: %s\n", d)
	}
	fmt.Fprintf(w, "\nMappings\n")
	for _, m := range pl.Mappings {
		fmt.Fprintf(w, "  %-3s %s -> %s: %s\n", m.Box, m.From, m.To, m.Why)
	}
	fmt.Fprintf(w, "\nWaits, from the configs' timers (each ends a wait without progress for that long)\n")
	t := check.Timers(p)
	for _, b := range t.Bounds() {
		fmt.Fprintf(w, "  %s\n", b)
	}
	printFix(w, p, pl, rx, fixed)
}

// printFix prints the prescription: for each box its rules and config
// changes, then the notes, and where --write-fixed put them.
func printFix(w io.Writer, p *check.Pair, pl *check.Plan, rx *check.Prescription, fixed string) {
	fmt.Fprintf(w, "\nThe fix\n")
	for _, q := range rx.Quiet {
		fmt.Fprintf(w, "  %s\n", q)
	}
	if rx.Nothing() && len(rx.Quiet) < len(pl.Services) {
		fmt.Fprintf(w, "  nothing to change: every DR service is declared by a mark its rules set only on traffic the other box did not send\n")
	}
	for _, b := range rx.Boxes {
		if len(b.Rules) == 0 {
			continue
		}
		if len(b.PeerMACs) == 1 {
			fmt.Fprintf(w, "  on %s (the other box's MAC %s; read it on your network with: %s):\n", b.Node, b.PeerMACs[0], b.ReadMACCmd)
		} else {
			fmt.Fprintf(w, "  on %s (the other boxes' MACs %s; read them on your network with: %s):\n", b.Node, strings.Join(b.PeerMACs, ", "), b.ReadMACCmd)
		}
		if slices.ContainsFunc(p.MACs, func(m net.HardwareAddr) bool { return m == nil }) {
			fmt.Fprintf(w, "    (a MAC the lab generated: give the real ones with --mac d1=MAC --mac d2=MAC ... for rules to use on your boxes)\n")
		}
		for _, r := range b.Rules {
			fmt.Fprintf(w, "    %s\n", r)
		}
		if len(check.Guards(b.Rules)) < len(b.Rules) {
			fmt.Fprintf(w, "    (%s)\n", check.CrashHoleWhy)
		}
		if d := strings.TrimSpace(b.Diff); d != "" {
			for _, l := range strings.Split(d, "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	for _, n := range rx.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if fixed != "" {
		var dirs []string
		for _, b := range pl.Boxes {
			dirs = append(dirs, filepath.Join(fixed, b.Node))
		}
		fmt.Fprintf(w, "\nFixed configs and rules written under %s.\n", strings.Join(dirs, ", "))
	}
}

// keepCheck leaves the pair's lab up, VRRP settled, with its configs as
// given (yours) or as prescribed: lvslab check --keep. In a micro-VM the
// agent plans the pair again from pairArgs (check's own arguments).
func keepCheck(j *checkJob, o *checkOpts, pairArgs []string, v *vmFlags) error {
	which, name := o.keep, *o.name
	info, err := kernel.Detect(o.mode)
	if err != nil {
		return err
	}
	data, err := yaml.Marshal(j.pl.Topology)
	if err != nil {
		return err
	}
	agentArgs := []string{"--check-keep", which}
	for _, a := range pairArgs {
		agentArgs = append(agentArgs, "--check-arg", a)
	}
	up := labUp{topo: j.pl.Topology, data: data, name: name, runDir: *o.runDir, agentArgs: agentArgs,
		start: func(ctx context.Context, l *lab.Lab) error { return j.start(ctx, l, which) }}
	if err := bringUp(info, v, up); err != nil {
		return err
	}
	configs := "your configs as given"
	if which == "prescribed" {
		configs = "the prescribed configs and rules"
	}
	fmt.Printf("\nThe pair runs with %s. Send it traffic with lvslab exec --lab %s client -- ...; watch the bridge and IPVS with lvslab watch --lab %s.\n",
		configs, name, name)
	return nil
}

// startPair is keepCheck's start in the micro-VM's agent: it plans the
// pair args name again and starts it on l.
func startPair(ctx context.Context, l *lab.Lab, args []string, which string) error {
	fs := newFlags("check")
	pf := addCheckPairFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	j, err := pf.plan(fs.Args())
	if err != nil {
		return err
	}
	return j.start(ctx, l, which)
}

// start runs the pair's directors on l with its configs (which: yours or
// prescribed) and, on ports that are not MySQL's, built-in backends as
// processes of the lab, so they outlive this one; and waits until VRRP has
// settled.
func (j *checkJob) start(ctx context.Context, l *lab.Lab, which string) error {
	impl := j.yours
	if which == "prescribed" {
		impl = j.prescribed
	}
	for _, s := range j.pl.Backends() {
		if s.Backend == scenarios.BackendMySQL {
			continue
		}
		for _, b := range j.pl.Boxes {
			if _, err := l.Box(b.Node).Start(fmt.Sprintf("backend-%d", s.Port),
				[]string{j.self, "backend", s.Backend, fmt.Sprint(s.Port), fmt.Sprint(l.ServerID(b.Node))}); err != nil {
				return err
			}
		}
	}
	return settle(ctx, l, impl(), scenarios.Fix(which))
}
