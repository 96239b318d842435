package main

import (
	"fmt"

	"github.com/lvslab/lvslab/director"
)

// cmdDirector is the Go director's command; so far it checks configs.
func cmdDirector(args []string) error {
	fs := newFlags("director")
	if _, err := parseVerb(fs, args, "check-config"); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("want: lvslab director check-config FILE")
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
