package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/lab/vmlab"
	"github.com/lvslab/lvslab/scenarios"
	"golang.org/x/term"
)

// cmdWatch prints a running lab's counters every interval: frames on the
// bridge from and to the client and the directors, each director's IPVS
// packets and ICMP time exceeded, and who holds the VIP. On a terminal it
// redraws one line; otherwise it prints a line each time.
func cmdWatch(args []string) error {
	fs := newFlags("watch")
	name, runDir := labFlags(fs)
	count := fs.Int("count", 0, "stop after this many lines (0: until interrupted)")
	interval := fs.Duration("interval", time.Second, "time between lines")
	tty := fs.Bool("tty", isTerminal(os.Stdout), "redraw one line (default: when the output is a terminal)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *interval < 100*time.Millisecond || *count < 0 {
		return usageError("--interval %s, --count %d: want at least 100ms and 0 or more", *interval, *count)
	}
	st, err := lab.ReadState(*runDir, *name)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if st.Runner == kernel.VM {
		// Inside the micro-VM the lab is where the agent built it; watch
		// from there, its lines streamed back.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		argv := []string{self, "watch", "--lab", *name, "--run-dir", lab.DefaultRunDir, "--count", fmt.Sprint(*count),
			"--interval", interval.String(), "--tty=" + fmt.Sprint(*tty)}
		done, err := vmlab.Call(ctx, vmlab.Dir(*runDir, *name), vmlab.Request{Op: "exec", Box: st.Topology.Nodes[0].Name, Argv: argv}, os.Stdout, os.Stderr)
		if ctx.Err() != nil { // interrupted, as natively: the agent ends the watch inside
			fmt.Println()
			return nil
		}
		if err != nil {
			return &exitError{max(done.Code, 1), err}
		}
		return exitCode(done.Code)
	}
	l, err := lab.Attach(*runDir, *name)
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := scenarios.NewCluster(l.Topo)
	if err != nil {
		return err
	}
	fmt.Println(watchHeader(c))
	last, err := scenarios.ReadCounters(l, c)
	if err != nil {
		return err
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-ctx.Done():
			fmt.Println()
			return nil
		case <-tick.C:
		}
		now, err := scenarios.ReadCounters(l, c)
		if err != nil {
			return err
		}
		line := watchLine(time.Now(), last, now)
		if *tty {
			fmt.Print("\r\033[K" + line)
		} else {
			fmt.Println(line)
		}
		last = now
	}
	if *tty {
		fmt.Println()
	}
	return nil
}

// watchHeader names watch's columns: the bridge frames of the client and
// of the directors, then each director's IPVS packets, then each one's
// ICMP time exceeded, then who holds the VIP.
func watchHeader(c scenarios.Cluster) string {
	h := fmt.Sprintf("%-8s %9s %9s", "time", "client", "directors")
	for _, d := range c.Directors {
		h += fmt.Sprintf(" %8s", d.Node+" ipvs")
	}
	for _, d := range c.Directors {
		h += fmt.Sprintf(" %6s", d.Node+" te")
	}
	return h + "  VIP on"
}

// watchLine is the counters' growth from last to now, under watchHeader.
func watchLine(at time.Time, last, now scenarios.Counters) string {
	line := fmt.Sprintf("%-8s %9d %9d", at.Format("15:04:05"), now.ClientFrames-last.ClientFrames, now.DirectorFrames-last.DirectorFrames)
	for i := range now.IPVSPackets {
		line += fmt.Sprintf(" %8d", now.IPVSPackets[i]-last.IPVSPackets[i])
	}
	for i := range now.TimeExceeded {
		line += fmt.Sprintf(" %6d", now.TimeExceeded[i]-last.TimeExceeded[i])
	}
	return line + "  " + vipHolders(now.VIP)
}

func vipHolders(nodes []string) string {
	switch len(nodes) {
	case 0:
		return "nobody"
	case 1:
		return nodes[0]
	}
	return strings.Join(nodes, "+") + " (both!)"
}

// isTerminal says whether f is a terminal (a TCGETS ioctl answers, as
// x/term asks it): /dev/null is a character device but no terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
