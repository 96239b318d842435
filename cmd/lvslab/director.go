package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lvslab/lvslab/director"
)

// cmdDirector is the Go director: run it, or check a config.
func cmdDirector(args []string) error {
	fs := newFlags("director")
	verb, err := parseVerb(fs, args, "check-config", "run")
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("want: lvslab director check-config|run FILE")
	}
	if verb == "run" {
		c, err := director.ParseConfigFile(fs.Arg(0))
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return director.Run(ctx, c, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	c, err := director.ParseConfigFile(fs.Arg(0))
	if err != nil {
		return err // a validation error exits 2
	}
	for _, s := range c.Desired() {
		fmt.Printf("%s: %s %s, %d realservers\n", fs.Arg(0), s.Key(), s.Scheduler, len(s.Dests))
	}
	fmt.Printf("%s: ok (vrrp vrid %d priority %d, guard %s)\n", fs.Arg(0), c.VRRP.VRID, c.VRRP.Priority, c.Guard.Mode)
	return nil
}
