package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/lab/vmlab"
	"github.com/lvslab/lvslab/scenarios"
	"github.com/spf13/pflag"
)

func cmdUp(args []string) error {
	fs := newFlags("up")
	topoFile := fs.StringP("topology", "t", "", "topology file (default: the built-in "+fixtures.DefaultTopologyName+")")
	noServices := fs.Bool("no-services", false, "network only: do not start MariaDB")
	directors, fix := directorFlags(fs)
	mode := fs.String("kernel", "", "where the lab runs: native, or vm (a micro-VM with IPVS); default $LVSLAB_KERNEL, else vm when the host kernel has no ip_vs")
	v := addVMFlags(fs, false, 2048)
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	if err := checkDirectorFlags(*directors, *fix); err != nil {
		return err
	}
	file, data := fixtures.DefaultTopologyName, fixtures.DefaultTopology
	if *topoFile != "" {
		var err error
		file = *topoFile
		if data, err = os.ReadFile(file); err != nil {
			return fmt.Errorf("read topology: %w", err)
		}
	}
	topo, err := lab.ParseTopology(file, data)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return lab.ErrNotRoot
	}
	info, err := kernel.Detect(*mode)
	switch {
	case errors.Is(err, kernel.ErrNoIPVS):
		// Asked for explicitly: a lab without IPVS still has namespaces,
		// bridges and MariaDB.
		fmt.Fprintf(os.Stderr, "lvslab: warning: %v; building natively anyway, IPVS commands in this lab will fail\n", err)
	case err != nil:
		return err
	}
	var agentArgs []string
	if *noServices {
		agentArgs = append(agentArgs, "--no-services")
	}
	if *directors != "" {
		agentArgs = append(agentArgs, "--directors", *directors, "--fix", *fix)
	}
	return bringUp(info, v, labUp{topo: topo, data: data, name: *name, runDir: *runDir, noServices: *noServices, agentArgs: agentArgs,
		start: func(ctx context.Context, l *lab.Lab) error { return startDirectors(ctx, l, *directors, *fix) }})
}

// labUp is a lab to bring up: its topology (whose YAML is data), its name
// and run directory, whether its MariaDB backends start, what runs on it
// once built (start), and the agent's arguments that run the same start
// in a micro-VM.
type labUp struct {
	topo         *lab.Topology
	data         []byte
	name, runDir string
	noServices   bool
	agentArgs    []string
	start        func(context.Context, *lab.Lab) error
}

// bringUp builds up's lab and runs its start on it, then prints the lab's
// status: natively, or in a micro-VM as info says, where the agent builds
// it and runs the same start. A failed start leaves nothing behind.
func bringUp(info kernel.Info, v *vmFlags, up labUp) error {
	topo, name, runDir := up.topo, up.name, up.runDir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t0 := time.Now()
	fmt.Fprintf(os.Stderr, "lvslab: building lab %q from topology %s (%s: %s)\n", name, topo.Name, info.Mode, info.Reason)
	var st *lab.Status
	if info.Mode == kernel.VM {
		vm, err := v.microVM(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "lvslab: booting a micro-VM (kernel %s); the lab is built inside it\n", vm.Kernel.Version)
		if st, err = vmlab.Up(ctx, vm, vmlab.UpOptions{Topo: topo, TopoData: up.data, RunDir: runDir, Name: name, AgentArgs: up.agentArgs}); err != nil {
			return err
		}
	} else {
		l, err := lab.Build(ctx, topo, lab.Options{Name: name, RunDir: runDir, Detach: true,
			NoServices: up.noServices, Progress: os.Stderr})
		if err != nil {
			return err
		}
		if err := up.start(ctx, l); err != nil {
			l.Close() // nothing half-built stays
			return err
		}
		if st, err = lab.Inspect(runDir, l.Name); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "lvslab: lab %q is up in %.2fs\n\n", name, time.Since(t0).Seconds())
	printStatus(st, name)
	return nil
}

func cmdStatus(args []string) error {
	fs := newFlags("status")
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := lab.ReadState(*runDir, *name)
	if err != nil {
		return err
	}
	s, err := inspect(*runDir, st)
	if err != nil {
		return err
	}
	printStatus(s, *name)
	return s.Problems()
}

// inspect asks the kernel, or the agent of a lab in a micro-VM.
func inspect(runDir string, st *lab.State) (*lab.Status, error) {
	if st.Runner != kernel.VM {
		return lab.Inspect(runDir, st.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return vmlab.Status(ctx, runDir, st.Name)
}

func printStatus(s *lab.Status, name string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "BOX\tNAMESPACE\tIFACE\tMAC\tADDRESSES\tSTATE\n")
	for _, b := range s.Boxes {
		if !b.Up {
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\tmissing\n", b.Name, b.Namespace)
			continue
		}
		for i, l := range b.Links {
			box, ns := b.Name, b.Namespace
			if i > 0 {
				box, ns = "", ""
			}
			ifc := l.Name
			if l.Alias != "" {
				ifc += " (" + l.Alias + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", box, ns, ifc, l.MAC, addrList(l.Addrs), l.State)
		}
	}
	w.Flush()
	if len(s.Processes) > 0 {
		fmt.Println()
		w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "BOX\tPROCESS\tPID\tSTATE\tLOG\n")
		for _, p := range s.Processes {
			state := "running"
			if !p.Alive {
				state = "exited"
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", p.Box, p.Name, p.PID, state, p.Log)
		}
		w.Flush()
	}
	flag := ""
	if name != "lab" {
		flag = " --lab " + name
	}
	node := "d1"
	if len(s.State.Topology.Nodes) > 0 && s.State.Topology.Node("d1") == nil {
		node = s.State.Topology.Nodes[0].Name
	}
	fmt.Printf("\nExec into a node:  lvslab exec%s %s -- ipvsadm -Ln\n", flag, node)
	// MySQL from the client: to the first MariaDB box, and through the
	// VIP once directors hold it.
	topo := s.State.Topology
	client := slices.IndexFunc(topo.Nodes, func(n lab.Node) bool { return n.HasRole(lab.RoleClient) })
	db := slices.IndexFunc(topo.Nodes, func(n lab.Node) bool { return n.HasService(lab.ServiceMySQL) && len(n.Interfaces) > 0 })
	if client >= 0 && db >= 0 && len(topo.Nodes[db].Interfaces[0].Prefixes()) > 0 {
		hosts := []string{topo.Nodes[db].Interfaces[0].Prefixes()[0].Addr().String()}
		if topo.VIP != "" && slices.ContainsFunc(s.Processes, func(p lab.ProcStatus) bool { return p.Name == "keepalived" || p.Name == "director" }) {
			hosts = append(hosts, topo.VIP)
		}
		for _, h := range hosts {
			fmt.Printf("                   lvslab exec%s %s -- mariadb -h %s -u %s -p%s -e 'select @@server_id'\n",
				flag, topo.Nodes[client].Name, h, lab.MySQLUser, lab.MySQLPassword)
		}
	}
	if s.State.Runner == kernel.VM {
		fmt.Printf("The lab runs in a micro-VM: paths above are inside it; exec has no stdin.\n")
	} else {
		fmt.Printf("Or with iproute2:  ip netns exec %s sh\n", filepath.Base(lab.NamespacePath(name, node)))
	}
	fmt.Printf("Tear down:         lvslab down%s\n", flag)
}

// addrList is an interface's addresses, the first few of many (a client
// standing for 16).
func addrList(addrs []string) string {
	if len(addrs) > 4 {
		return fmt.Sprintf("%s ... %s (%d)", strings.Join(addrs[:2], ","), addrs[len(addrs)-1], len(addrs))
	}
	return strings.Join(addrs, ",")
}

func cmdExec(args []string) error {
	fs := newFlags("exec")
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) > 1 && rest[1] == "--" {
		rest = append(rest[:1], rest[2:]...)
	}
	if len(rest) < 2 {
		return usageError("want NODE -- CMD [ARG...]")
	}
	if err := lab.CheckNodeName(rest[0]); err != nil {
		return &exitError{2, err}
	}
	st, err := lab.ReadState(*runDir, *name)
	if err != nil {
		return err
	}
	if st.Runner == kernel.VM {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		done, err := vmlab.Call(ctx, vmlab.Dir(*runDir, *name),
			vmlab.Request{Op: "exec", Box: rest[0], Argv: rest[1:]}, os.Stdout, os.Stderr)
		if err != nil {
			return &exitError{max(done.Code, 1), err}
		}
		return exitCode(done.Code)
	}
	return lab.Exec(*name, rest[0], rest[1:])
}

func cmdDown(args []string) error {
	fs := newFlags("down")
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if st, err := lab.ReadState(*runDir, *name); err == nil && st.Runner == kernel.VM {
		what, err := vmlab.Down(*runDir, st, lab.StopGrace)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(os.Stderr, "lvslab: lab %q down: %s\n", *name, what)
		return nil
	}
	r, err := lab.Down(*runDir, *name, lab.StopGrace)
	if err != nil {
		return err
	}
	if len(r.Namespaces)+len(r.RunDirs) == 0 {
		fmt.Fprintf(os.Stderr, "lvslab: no lab %q: nothing to remove\n", *name)
		return nil
	}
	fmt.Fprintf(os.Stderr, "lvslab: lab %q down: removed %s\n", *name, r)
	return nil
}

func cmdSweep(args []string) error {
	fs := newFlags("sweep")
	runDir := fs.String("run-dir", lab.DefaultRunDir, "where labs keep their state")
	name := fs.String("lab", "", "sweep only this lab (default: every lab)")
	if err := parse(fs, args); err != nil {
		return err
	}
	r, err := lab.Sweep(*runDir, *name)
	fmt.Fprintf(os.Stderr, "lvslab: sweep removed %s\n", r)
	return err
}

// cmdPrepare makes the MariaDB template datadir in the cache, so that
// labs started together (six Ginkgo processes, lvslab run's six
// scenarios) find it made rather than each make it at once.
func cmdPrepare(args []string) error {
	fs := newFlags("prepare")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := lab.EnsureTemplate(context.Background(), os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lvslab: mariadb template: %s\n", dir)
	return nil
}

// cmdAgent runs inside the micro-VM of `lvslab up --kernel vm` (and
// `lvslab check --keep`): it builds the lab and serves the host's requests
// until `down`.
func cmdAgent(args []string) error {
	fs := newFlags("agent")
	topoFile := fs.StringP("topology", "t", "", "topology file")
	name := fs.String("lab", "lab", "lab name")
	noServices := fs.Bool("no-services", false, "network only: do not start MariaDB")
	directors, fix := directorFlags(fs)
	keep := fs.String("check-keep", "", "start a user's pair as lvslab check --keep does: yours or prescribed")
	var checkArgs []string
	fs.StringArrayVar(&checkArgs, "check-arg", nil, "with --check-keep, one of lvslab check's arguments that say what the pair is (repeated, in order)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var ports []vmlab.Port
	for i := range kernel.AgentPorts {
		port, err := kernel.OpenPort(kernel.AgentPort(i), os.O_RDWR)
		if err != nil {
			return fmt.Errorf("agent runs only inside lvslab's micro-VM: %w", err)
		}
		ports = append(ports, vmlab.DevicePort{File: port})
	}
	start := func(ctx context.Context, l *lab.Lab) error { return startDirectors(ctx, l, *directors, *fix) }
	if *keep != "" {
		start = func(ctx context.Context, l *lab.Lab) error { return startPair(ctx, l, checkArgs, *keep) }
	}
	topo, err := lab.ParseTopologyFile(*topoFile)
	var l *lab.Lab
	if err == nil {
		l, err = lab.Build(context.Background(), topo, lab.Options{Name: *name, NoServices: *noServices, Progress: os.Stderr})
	}
	if err == nil {
		err = start(context.Background(), l)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvslab agent: %v\n", err)
	}
	return vmlab.Serve(context.Background(), l, lab.DefaultRunDir, err, ports...)
}

// directorFlags are up's --directors and --fix.
func directorFlags(fs *pflag.FlagSet) (directors, fix *string) {
	return fs.String("directors", "", "start directors on the topology's two director nodes: keepalived, lvslab, or mixed (keepalived on the first, lvslab on the second)"),
		fs.String("fix", string(scenarios.FixNone), "with --directors, the loop fix: none (the loop), fwmark (the mark and the peer REDIRECT), fwmark-only (the mark alone), backup-only, redirect (keepalived only)")
}

func checkDirectorFlags(directors, fix string) error {
	switch {
	case directors != "" && !slices.Contains([]string{"keepalived", "lvslab", "mixed"}, directors):
		return usageError("--directors %q: want keepalived, lvslab or mixed", directors)
	case !slices.Contains(scenarios.Fixes, scenarios.Fix(fix)):
		return usageError("--fix %q: want one of %v", fix, scenarios.Fixes)
	case fix == string(scenarios.FixRedirect) && directors != "keepalived":
		return usageError("--fix redirect is keepalived's notify scripts: use --directors keepalived")
	}
	return nil
}

// startDirectors starts directors ("" for none) on l's director nodes
// with fix, and waits until the MASTER alone holds the VIP.
func startDirectors(ctx context.Context, l *lab.Lab, directors, fix string) error {
	if directors == "" {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	impls := scenarios.Implementations(self)
	var impl scenarios.Implementation
	if directors == "mixed" {
		impl = scenarios.Mixed{impls["keepalived"](), impls["lvslab"]()}
	} else {
		impl = impls[directors]()
	}
	return settle(ctx, l, impl, scenarios.Fix(fix))
}

// settle starts impl with fix on l's director nodes and waits until
// the MASTER alone holds the VIP and the fix is in place.
func settle(ctx context.Context, l *lab.Lab, impl scenarios.Implementation, fix scenarios.Fix) error {
	c, err := scenarios.NewCluster(l.Topo)
	if err != nil {
		return err
	}
	var nodes []string
	for _, d := range c.Directors {
		nodes = append(nodes, d.Node)
	}
	fmt.Fprintf(os.Stderr, "lvslab: starting %s on %s, fix %s\n", impl.Name(), strings.Join(nodes, ", "), fix)
	if err := scenarios.StartBoth(ctx, impl, l, c, fix); err != nil {
		return err
	}
	return scenarios.Settle(ctx, l, c, impl, fix)
}
