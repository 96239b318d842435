package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lvslab/lvslab/scenarios/diagnose"
)

// isBundle says whether a check argument is lvslab collect's bundle (a
// .tar.gz, or a directory it was unpacked into) rather than a config.
func isBundle(arg string) bool {
	if strings.HasSuffix(arg, ".tar.gz") || strings.HasSuffix(arg, ".tgz") {
		return true
	}
	_, err := os.Stat(filepath.Join(arg, "box.json"))
	return err == nil
}

// bundleInputs are check's inputs taken from the bundles: the unpacked
// configs, and diagnose's findings.
type bundleInputs struct {
	configs   []string
	diagnosis []diagnose.Finding
	about     []string // each box: its bundle, kernel, keepalived
	tmp       string
}

// fromBundles reads the boxes' bundles and sets f as the user would have
// by hand: each box's rules (--iptables), address (--addr), MAC (--mac),
// and the scripts its config names (--scripts, one directory by name).
func (f *checkPairFlags) fromBundles(paths []string) (*bundleInputs, error) {
	for _, p := range paths {
		if !isBundle(p) {
			return nil, usageError("%s: give every box as a bundle of lvslab collect, or every box as a config", p)
		}
	}
	if len(f.rules)+len(f.macs)+len(f.addrs) > 0 || f.scripts != "" {
		return nil, usageError("--iptables, --mac, --addr and --scripts come from the bundles: give them with configs only")
	}
	tmp, err := os.MkdirTemp("", "lvslab-check-")
	if err != nil {
		return nil, err
	}
	in, err := f.readBundles(paths, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return in, nil
}

func (f *checkPairFlags) readBundles(paths []string, tmp string) (*bundleInputs, error) {
	boxes, err := diagnose.Load(paths, filepath.Join(tmp, "bundles"))
	if err != nil {
		return nil, &exitError{2, err}
	}
	in := &bundleInputs{diagnosis: diagnose.Diagnose(boxes), tmp: tmp}
	f.scripts = filepath.Join(tmp, "scripts")
	if err := os.MkdirAll(f.scripts, 0o755); err != nil {
		return nil, err
	}
	for i, b := range boxes {
		node := fmt.Sprintf("d%d", i+1)
		in.configs = append(in.configs, b.ConfigPath)
		in.about = append(in.about, fmt.Sprintf("%s: %s, collected %s on %s: Linux %s, %s", node, paths[i],
			b.Bundle.Collected.Format("2006-01-02 15:04 MST"), b.Bundle.Host, b.Bundle.Kernel, b.Bundle.Keepalived))
		rules := b.RulesPath
		if rules == "" { // collect could not run iptables-save: no rules
			rules = filepath.Join(tmp, node+".rules")
			if err := os.WriteFile(rules, nil, 0o644); err != nil {
				return nil, err
			}
		}
		f.rules = append(f.rules, rules)
		addr, mac := b.Own()
		if !addr.IsValid() || mac == "" {
			return nil, &exitError{2, fmt.Errorf("%s: the bundle shows no address or MAC on its VRRP interface", paths[i])}
		}
		f.addrs = append(f.addrs, node+"="+addr.String())
		f.macs = append(f.macs, node+"="+mac)
		for path, data := range b.Scripts() {
			dst := filepath.Join(f.scripts, filepath.Base(path))
			if _, err := os.Stat(dst); err == nil {
				continue // the first box's, where both have one by that name
			}
			if err := os.WriteFile(dst, data, 0o755); err != nil {
				return nil, err
			}
		}
	}
	return in, nil
}

// printDiagnosis writes what the bundles say before check's own account:
// the boxes, and diagnose's findings.
func printDiagnosis(w io.Writer, j *checkJob) {
	if j.bundles == nil {
		return
	}
	fmt.Fprintf(w, "The boxes, from lvslab collect's bundles\n")
	for _, a := range j.bundles.about {
		fmt.Fprintf(w, "  %s\n", a)
	}
	fmt.Fprintf(w, "  (the lab runs its own kernel: lvslab kernel info says which)\n\nDiagnosis (lvslab diagnose)\n")
	for _, f := range j.bundles.diagnosis {
		fmt.Fprintf(w, "  %s\n", f)
	}
	if len(j.bundles.diagnosis) == 0 {
		fmt.Fprintf(w, "  no findings\n")
	}
	fmt.Fprintln(w)
}

// onBoxes returns text with the unpacked copies' paths turned back into
// the boxes' own (each line names its box).
func (in *bundleInputs) onBoxes(text string) string {
	for i := range in.configs {
		text = strings.ReplaceAll(text, filepath.Join(in.tmp, "bundles", strconv.Itoa(i), "files"), "")
	}
	return text
}
