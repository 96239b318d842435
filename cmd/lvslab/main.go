// Command lvslab builds LVS-DR labs from network namespaces, runs directors
// and MariaDB backends in them, and tears them down.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// command is one subcommand: args its positional arguments (its flags
// are its flag set's, listed by --help), run what it does.
type command struct {
	name, args, summary string
	run                 func(args []string) error
}

// raw are the commands whose arguments after the first positional one
// are another command's (exec NODE -- CMD, kexec BINARY -test.run ...,
// vm run -- CMD): their flags end there. Every other command takes its
// flags anywhere, before or after its arguments.
var raw = []string{"exec", "kexec", "vm"}

// commands is filled in init: the commands refer to it for their --help.
var commands []command

func init() {
	commands = []command{
		{"run", "", "the headline: reproduce the two-box ping-pong loop with keepalived and prove the fwmark fix", cmdRun},
		{"load", "", "the loop's cost curve: a paced workload at each rate, one director alone against the pair without a fix and with each", cmdLoad},
		{"check", "BOX1.conf BOX2.conf [BOX3.conf [BOX4.conf]]", "read your boxes' keepalived configs (two, or three or four), derive the lab for them, write the fwmark fix for your addresses, MACs and services, and run both in the lab through failover events, each service of the pair in turn (exit 0: all CLEAN; 1: a run loops or does not balance, or with --plan something to fix; 2: bad input); --keep leaves the pair's lab up instead", cmdCheck},
		{"report", "[RUN-ID] | merge SHARD-DIR...", "re-render a run's index.html from its summary.json (default: latest), or merge the reports of a suite's shards into one", cmdReport},
		{"up", "", "build a lab, start its MariaDB backends and, with --directors, the two directors (VRRP settled), leave it running (in a micro-VM if the host has no IPVS)", cmdUp},
		{"status", "", "show a running lab's namespaces, interfaces and processes", cmdStatus},
		{"exec", "NODE -- CMD [ARG...]", "run a command inside a node's namespace; exits with its code", cmdExec},
		{"watch", "", "show a running lab's counters every second: bridge frames of the client and of the directors, each director's IPVS packets and ICMP time exceeded, who holds the VIP", cmdWatch},
		{"down", "", "stop a lab's processes and remove everything it created", cmdDown},
		{"director", "check-config|run FILE | status", "the Go director: validate a config (exit 2 with file:line), run it in this network namespace, or show a running one's state", cmdDirector},
		{"vm", "run -- CMD [ARG...]", "run a command in a micro-VM booted with a stock distro kernel (for IPVS)", cmdVM},
		{"kernel", "info|fetch|list", "say where IPVS work would run and why; fetch micro-VM kernels (the distro's, or a Debian suite's), list them", cmdKernel},
		{"agent", "", "(internal) inside the micro-VM of `up --kernel vm`: build the lab, serve the host", cmdAgent},
		{"backend", "http|https|banner|udp|smtp PORT SERVER_ID", "(internal) serve a built-in backend until SIGTERM: what a box of lvslab check --keep runs on a port that is not MySQL's", cmdBackend},
		{"probe", "tcp|mysql-ping ADDRESS PORT", "(internal) check a realserver once, exit 0 if it answers: what lvslab check runs for a MISC_CHECK script the lab does not have", cmdProbe},
		{"kexec", "BINARY [ARG...]", "go test -exec wrapper: run BINARY where the kernel has IPVS", cmdKexec},
		{"collect", "", "on a real director box: read its keepalived config (includes, scripts), versions, sysctls, links, routes, rules, IPVS table, and sample its IPVS counters and VIPs for --seconds, into a bundle (secrets redacted; changes nothing)", cmdCollect},
		{"diagnose", "BOX1.tar.gz BOX2.tar.gz [...]", "findings on the bundles collect made, each with file:line or live numbers (exit 1: a finding means a loop)", cmdDiagnose},
		{"sweep", "", "remove the leftovers of every lab, or of one, after a crash", cmdSweep},
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

// errHelpShown ends a command whose --help was asked for and printed.
// Not pflag.ErrHelp: cobra answers that by printing the help again.
var errHelpShown = errors.New("help shown")

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
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	err := rootCommand(args).Execute()
	if err == nil || errors.Is(err, errHelpShown) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ee.code // a command's own exit code, already explained
	}
	if !slices.ContainsFunc(commands, func(c command) bool { return c.name == args[0] }) {
		fmt.Fprintf(os.Stderr, "lvslab: %v (see lvslab --help)\n", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "lvslab %s: %v\n", args[0], err)
	if ee != nil {
		return ee.code
	}
	if errors.Is(err, lab.ErrInvalid) || errors.Is(err, lab.ErrBadName) {
		return 2
	}
	return 1
}

// rootCommand is lvslab's command tree on spf13/cobra, to run with args:
// dispatch, `lvslab help`, and `lvslab completion bash|zsh|fish`. Each
// command parses its own flags (newFlags: pflag, GNU style), so its
// --help lists exactly the flags it has, and errors are printed once,
// by run.
func rootCommand(args []string) *cobra.Command {
	root := &cobra.Command{Use: "lvslab", Short: "two-box LVS-DR lab and conformance suite", SilenceErrors: true, SilenceUsage: true}
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		if i := slices.IndexFunc(commands, func(c command) bool { return c.name == cmd.Name() }); i >= 0 {
			commands[i].run([]string{"--help"}) // lvslab help CMD: CMD's own usage
			return
		}
		usage(os.Stdout)
	})
	for _, c := range commands {
		root.AddCommand(&cobra.Command{Use: c.name, Short: c.summary, DisableFlagParsing: true,
			Hidden: strings.HasPrefix(c.summary, "(internal)"),
			RunE:   func(_ *cobra.Command, args []string) error { return c.run(args) }})
	}
	root.SetArgs(args)
	return root
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "lvslab: two-box LVS-DR lab and conformance suite\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  lvslab %s\n        %s\n", strings.TrimSpace(c.name+" [flags] "+c.args), c.summary)
	}
	fmt.Fprintf(w, "  lvslab completion bash|zsh|fish\n        print a shell completion script for lvslab's commands\n")
	fmt.Fprintf(w, "\nRun `lvslab COMMAND --help` for a command's flags; flags go before or after its arguments. Labs live in %s/<lab>/.\n", lab.DefaultRunDir)
}

// newFlags returns the flag set of the command called name: GNU-style
// flags, anywhere among the arguments unless the command is one of raw;
// its --help prints the command's synopsis and its flags, on stdout.
func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	cmd := strings.Fields(name)[0]
	fs.SetInterspersed(!slices.Contains(raw, cmd))
	fs.SortFlags = false
	for _, c := range commands {
		if c.name == cmd {
			fs.Usage = func() {
				args := c.args
				if name != c.name { // a verb's own flag set: report merge
					args = "..."
				}
				fmt.Fprintf(os.Stdout, "Usage: lvslab %s\n\n%s.\n", strings.TrimSpace(name+" [flags] "+args), strings.ToUpper(c.summary[:1])+c.summary[1:])
				if fs.HasFlags() {
					fmt.Fprintf(os.Stdout, "\nFlags:\n%s", fs.FlagUsages())
				}
			}
		}
	}
	return fs
}

// labFlags adds the flags every lab command shares.
func labFlags(fs *pflag.FlagSet) (name, runDir *string) {
	def := os.Getenv("LVSLAB_LAB")
	if def == "" {
		def = "lab"
	}
	name = fs.String("lab", def, "lab name (env LVSLAB_LAB); two labs need two names")
	runDir = fs.String("run-dir", lab.DefaultRunDir, "where labs keep their state")
	return name, runDir
}

// parse parses a command's flags: --help prints its usage; a bad flag is
// a usage error (exit 2) of one line, pointing at --help. A --lab flag,
// given or defaulted, must be a plain lab name: it becomes a path.
func parse(fs *pflag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return errHelpShown // pflag printed fs.Usage
		}
		return usageError("%v (lvslab %s --help lists its flags)", err, fs.Name())
	}
	fs.SetOutput(os.Stderr)
	if f := fs.Lookup("lab"); f != nil && (f.Changed || f.DefValue != "") {
		if err := lab.CheckLabName(f.Value.String()); err != nil {
			return &exitError{2, err}
		}
	}
	return nil
}

// parseVerb parses "VERB [flags] [args]" for commands with sub-verbs (vm
// run, kernel info): it returns the verb, or a usage error naming them.
func parseVerb(fs *pflag.FlagSet, args []string, verbs ...string) (string, error) {
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
