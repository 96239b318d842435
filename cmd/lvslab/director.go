package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/director"
)

// cmdDirector is the Go director: run it, check a config, or ask a running
// one for its status.
func cmdDirector(args []string) error {
	fs := newFlags("director")
	socket := fs.String("socket", director.DefaultStatusSocket, "status: the director's status socket (status.socket in its config)")
	asJSON := fs.Bool("json", false, "status: print the JSON the socket returns")
	verb, err := parseVerb(fs, args, "check-config", "run", "status")
	if err != nil {
		return err
	}
	if verb == "status" {
		if fs.NArg() != 0 {
			return usageError("want: lvslab director status [--socket PATH] [--json]")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := director.ReadStatus(ctx, *socket)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		st.WriteText(os.Stdout)
		return nil
	}
	if fs.NArg() != 1 {
		return usageError("want: lvslab director check-config|run FILE")
	}
	c, err := director.ParseConfigFile(fs.Arg(0))
	if err != nil {
		return err // a validation error exits 2
	}
	if verb == "run" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return director.Run(ctx, c, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	for _, s := range c.Desired() {
		fmt.Printf("%s: %s %s, %d realservers\n", fs.Arg(0), s.Key(), s.Scheduler, len(s.Dests))
	}
	fmt.Printf("%s: ok (vrrp vrid %d priority %d, guard %s)\n", fs.Arg(0), c.VRRP.VRID, c.VRRP.Priority, c.Guard.Mode)
	return nil
}
