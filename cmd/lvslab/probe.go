package main

import (
	"context"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/scenarios"
)

// cmdProbe checks a realserver once: exit 0 if it answers, 1 if not. It
// stands in for a user's MISC_CHECK script that the lab does not have
// (lvslab check), so it takes keepalived's misc_path form: arguments only.
func cmdProbe(args []string) error {
	fs := newFlags("probe")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 3 || (fs.Arg(0) != "tcp" && fs.Arg(0) != "mysql-ping") {
		return usageError("want: lvslab probe [--timeout D] tcp|mysql-ping ADDRESS PORT")
	}
	addr, err := netip.ParseAddr(fs.Arg(1))
	if err != nil {
		return usageError("address %q: %v", fs.Arg(1), err)
	}
	port, err := strconv.ParseUint(fs.Arg(2), 10, 16)
	if err != nil {
		return usageError("port %q: %v", fs.Arg(2), err)
	}
	probe, err := director.NewProbe(director.CheckConfig{Type: fs.Arg(0), Timeout: *timeout,
		User: lab.MySQLUser, Password: lab.MySQLPassword}, addr, int(port))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return probe(ctx) // an error exits 1
}

// cmdBackend serves a built-in backend (what lvslab check's labs run on a
// port that is not MySQL's) until SIGTERM: in a box of a lab left up by
// lvslab check --keep, where the lab starts it.
func cmdBackend(args []string) error {
	fs := newFlags("backend")
	if err := parse(fs, args); err != nil {
		return err
	}
	kind := fs.Arg(0)
	port, err1 := strconv.ParseUint(fs.Arg(1), 10, 16)
	id, err2 := strconv.Atoi(fs.Arg(2))
	if fs.NArg() != 3 || !slices.Contains(scenarios.BackendKinds, kind) || err1 != nil || err2 != nil {
		return usageError("want: lvslab backend %s PORT SERVER_ID", strings.Join(scenarios.BackendKinds, "|"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return scenarios.ServeBackend(ctx, kind, int(port), id)
}
