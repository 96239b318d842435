package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
)

func cmdUp(args []string) error {
	fs := newFlags("up")
	topoFile := fs.String("t", "", "topology file (default: the built-in "+fixtures.DefaultTopologyName+")")
	noServices := fs.Bool("no-services", false, "network only: do not start MariaDB")
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	topo, err := loadTopology(*topoFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "lvslab: building lab %q from topology %s\n", *name, topo.Name)
	l, err := lab.Build(ctx, topo, lab.Options{Name: *name, RunDir: *runDir, Detach: true,
		NoServices: *noServices, Progress: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lvslab: lab %q is up in %.2fs\n\n", l.Name, timeSince(l.Started))
	return printStatus(*runDir, l.Name)
}

func loadTopology(file string) (*lab.Topology, error) {
	if file == "" {
		return lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	}
	return lab.ParseTopologyFile(file)
}

func cmdStatus(args []string) error {
	fs := newFlags("status")
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	return printStatus(*runDir, *name)
}

func printStatus(runDir, name string) error {
	s, err := lab.Inspect(runDir, name)
	if err != nil {
		return err
	}
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
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", box, ns, ifc, l.MAC, strings.Join(l.Addrs, ","), l.State)
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
	fmt.Printf("\nExec into a node:  lvslab exec%s d1 -- ipvsadm -Ln\n", flag)
	fmt.Printf("                   lvslab exec%s client -- mariadb -h 192.168.1.233 -u %s -p%s -e 'select @@server_id'\n", flag, lab.MySQLUser, lab.MySQLPassword)
	fmt.Printf("Or with iproute2:  ip netns exec %s sh\n", lab.NamespacePath(name, "d1")[len(lab.NetnsDir)+1:])
	fmt.Printf("Tear down:         lvslab down%s\n", flag)
	return nil
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
	if _, err := lab.ReadState(*runDir, *name); err != nil {
		return err
	}
	return lab.Exec(*name, rest[0], rest[1:])
}

func cmdDown(args []string) error {
	fs := newFlags("down")
	name, runDir := labFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
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
