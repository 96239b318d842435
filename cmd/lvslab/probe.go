package main

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/lab"
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
