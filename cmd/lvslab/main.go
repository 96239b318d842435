// Command lvslab builds LVS-DR labs from network namespaces, runs directors
// and MariaDB backends in them, and tears them down.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
)

// command is one subcommand: its flags live in run.
type command struct {
	name, args, summary string
	run                 func(args []string) error
}

// commands is filled in init: the commands refer to it for their --help.
var commands []command

func init() {
	commands = []command{
		{"run", "[--connections N] [--reports DIR] [--kernel native|vm]", "the headline: reproduce the two-box ping-pong loop with keepalived and prove the fwmark fix", cmdRun},
		{"load", "[--rates 10,50,200] [--duration 10s] [--impl keepalived|lvslab] [--fixes LIST] [--reports DIR]", "the loop's cost curve: a paced workload at each rate, one director alone against the pair without a fix and with each", cmdLoad},
		{"check", "[--plan] [--events LIST] [--iptables R1 --iptables R2] [--mac d1=MAC] [--addr d1=IP] [--port MARK=PORT] [--scripts DIR] [--write-fixed DIR [--force]] [--json] [--reports DIR] [--keep yours|prescribed [--lab NAME]] BOX1.conf BOX2.conf [BOX3.conf [BOX4.conf]]", "read your boxes' keepalived configs (two, or three or four), derive the lab for them, write the fwmark fix for your addresses, MACs and services, and run both in the lab through failover events, each service of the pair in turn (exit 0: all CLEAN; 1: a run loops or does not balance, or with --plan something to fix; 2: bad input); --keep leaves the pair's lab up instead", cmdCheck},
		{"report", "[--reports DIR] [RUN-ID] | merge [--run-id ID] SHARD-DIR...", "re-render a run's index.html from its summary.json (default: latest), or merge the reports of a suite's shards into one", cmdReport},
		{"up", "[-t topology.yaml] [--lab NAME] [--directors keepalived|lvslab|mixed [--fix FIX]] [--kernel native|vm]", "build a lab, start its MariaDB backends and, with --directors, the two directors (VRRP settled), leave it running (in a micro-VM if the host has no IPVS)", cmdUp},
		{"status", "[--lab NAME]", "show a running lab's namespaces, interfaces and processes", cmdStatus},
		{"exec", "[--lab NAME] NODE -- CMD [ARG...]", "run a command inside a node's namespace; exits with its code", cmdExec},
		{"watch", "[--lab NAME] [--count N] [--interval D]", "show a running lab's counters every second: bridge frames of the client and of the directors, each director's IPVS packets and ICMP time exceeded, who holds the VIP", cmdWatch},
		{"down", "[--lab NAME]", "stop a lab's processes and remove everything it created", cmdDown},
		{"director", "check-config|run FILE | status", "the Go director: validate a config (exit 2 with file:line), run it in this network namespace, or show a running one's state", cmdDirector},
		{"vm", "run [--timeout D] [--memory MB] [--share DIR] -- CMD [ARG...]", "run a command in a micro-VM booted with a stock distro kernel (for IPVS)", cmdVM},
		{"kernel", "info|fetch|list [--kernel native|vm] [--suite SUITE]", "say where IPVS work would run and why; fetch micro-VM kernels (the distro's, or a Debian suite's), list them", cmdKernel},
		{"agent", "--lab NAME -t FILE", "(internal) inside the micro-VM of `up --kernel vm`: build the lab, serve the host", cmdAgent},
		{"backend", "http|banner PORT SERVER_ID", "(internal) serve a built-in backend until SIGTERM: what a box of lvslab check --keep runs on a port that is not MySQL's", cmdBackend},
		{"probe", "[--timeout D] tcp|mysql-ping ADDRESS PORT", "(internal) check a realserver once, exit 0 if it answers: what lvslab check runs for a MISC_CHECK script the lab does not have", cmdProbe},
		{"kexec", "[--kernel native|vm] BINARY [ARG...]", "go test -exec wrapper: run BINARY where the kernel has IPVS", cmdKexec},
		{"sweep", "[--lab NAME]", "remove the leftovers of every lab, or of one, after a crash", cmdSweep},
		{"prepare", "", "make what every lab shares, once, before labs start in parallel: the MariaDB template datadir in the cache (make run and make test call it)", cmdPrepare},
	}
}

// exitError carries an exit code: 2 for bad usage or input.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, a ...any) error {
	return &exitError{2, fmt.Errorf(format, a...)}
}

func main() {
	if kernel.IsGuestInit() {
		kernel.GuestInit() // we are /init inside a micro-VM
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) && ee.err == nil {
			return ee.code // a command's own exit code, already explained
		}
		fmt.Fprintf(os.Stderr, "lvslab %s: %v\n", c.name, err)
		if ee != nil {
			return ee.code
		}
		if errors.Is(err, lab.ErrInvalid) || errors.Is(err, lab.ErrBadName) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(os.Stderr, "lvslab: unknown command %q (see lvslab --help)\n", args[0])
	return 2
}

func usage() {
	fmt.Fprintf(os.Stderr, "lvslab: two-box LVS-DR lab and conformance suite\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  lvslab %s %s\n        %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun `lvslab COMMAND --help` for a command's flags. Labs live in %s/<lab>/.\n", lab.DefaultRunDir)
}

// newFlags returns a FlagSet whose --help shows the command's synopsis.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	for _, c := range commands {
		if c.name == name {
			fs.Usage = func() {
				fmt.Fprintf(fs.Output(), "Usage: lvslab %s %s\n\n%s.\n", c.name, c.args, strings.ToUpper(c.summary[:1])+c.summary[1:])
				if hasFlags(fs) {
					fmt.Fprintf(fs.Output(), "\nFlags:\n")
					fs.PrintDefaults()
				}
			}
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// labFlags adds the flags every lab command shares.
func labFlags(fs *flag.FlagSet) (name, runDir *string) {
	def := os.Getenv("LVSLAB_LAB")
	if def == "" {
		def = "lab"
	}
	name = fs.String("lab", def, "lab name (env LVSLAB_LAB); two labs need two names")
	runDir = fs.String("run-dir", lab.DefaultRunDir, "where labs keep their state")
	return name, runDir
}

// parse parses flags; bad flags are usage errors (exit 2). A --lab flag,
// given or defaulted, must be a plain lab name: it becomes a path.
// parse parses a command's flags: --help prints its usage; a bad flag is
// one line, pointing at --help.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.Usage()
			return err
		}
		return usageError("%v (lvslab %s --help lists its flags)", err, fs.Name())
	}
	fs.SetOutput(os.Stderr)
	if f := fs.Lookup("lab"); f != nil {
		given := false
		fs.Visit(func(v *flag.Flag) { given = given || v == f })
		if given || f.DefValue != "" {
			if err := lab.CheckLabName(f.Value.String()); err != nil {
				return &exitError{2, err}
			}
		}
	}
	return nil
}

func timeSince(t time.Time) float64 { return time.Since(t).Seconds() }

// parseVerb parses "VERB [flags] [args]" for commands with sub-verbs (vm
// run, kernel info): it returns the verb, or a usage error naming them.
func parseVerb(fs *flag.FlagSet, args []string, verbs ...string) (string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := parse(fs, args); err != nil {
			return "", err
		}
		return "", usageError("want one of: %s", strings.Join(verbs, ", "))
	}
	if !slices.Contains(verbs, args[0]) {
		return "", usageError("unknown %s command %q: want one of: %s", fs.Name(), args[0], strings.Join(verbs, ", "))
	}
	return args[0], parse(fs, args[1:])
}
