package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/lvslab/lvslab/scenarios/collect"
	"github.com/lvslab/lvslab/scenarios/diagnose"
)

// maxCollectWindow bounds collect's live window.
const maxCollectWindow = 10 * time.Minute

// cmdCollect reads the director box it runs on into a bundle for
// diagnose and check elsewhere.
func cmdCollect(args []string) error {
	fs := newFlags("collect")
	config := fs.String("config", "/etc/keepalived/keepalived.conf", "the keepalived config (its includes and scripts come along)")
	seconds := fs.Float64("seconds", 10, "the live window in seconds: how long to sample the IPVS counters and who holds the VIPs")
	out := fs.String("out", "", "the bundle to write, - for stdout (default: HOST.tar.gz)")
	noRedact := fs.Bool("no-redact", false, "keep auth_pass and the passwords in script arguments (redacted by default)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("collect takes no arguments, got %q", fs.Args())
	}
	window := time.Duration(*seconds * float64(time.Second))
	if *seconds < 0 || window > maxCollectWindow {
		return usageError("--seconds %g: want 0 to %g", *seconds, maxCollectWindow.Seconds())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	t0 := time.Now()
	b, err := collect.Collect(ctx, collect.Options{Config: *config, Window: window, NoRedact: *noRedact, Progress: os.Stderr})
	if errors.Is(err, collect.ErrMissing) {
		return &exitError{2, err}
	}
	if err != nil {
		return err
	}
	path := *out
	if path == "" {
		path = b.Host + ".tar.gz"
	}
	if path == "-" { // through lvslab exec, say, which has no files of the host
		return b.Write(os.Stdout)
	}
	if err := b.WriteFile(path); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lvslab collect: %s, %d items, %d bytes, in %.1fs (MANIFEST inside lists them)\n", path, len(b.Items), st.Size(), time.Since(t0).Seconds())
	return nil
}

// cmdDiagnose gives the findings on the bundles of a pair's boxes.
func cmdDiagnose(args []string) error {
	fs := newFlags("diagnose")
	asJSON := fs.Bool("json", false, "the findings as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usageError("diagnose wants a bundle per box, two or more (lvslab collect makes them), got %d", fs.NArg())
	}
	tmp, err := os.MkdirTemp("", "lvslab-diagnose-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	boxes, err := diagnose.Load(fs.Args(), filepath.Join(tmp, "b"))
	if err != nil {
		return &exitError{2, err}
	}
	findings := diagnose.Diagnose(boxes)
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		if err := e.Encode(findings); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			fmt.Println(f)
		}
		if len(findings) == 0 {
			fmt.Println("no findings")
		}
	}
	if diagnose.Loops(findings) {
		return &exitError{code: 1}
	}
	return nil
}
