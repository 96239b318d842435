package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lvslab/lvslab/lab/kernel"
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
	paths     []string // the bundles
	configs   []string
	diagnosis []diagnose.Finding
	about     []string // each box: its bundle, kernel, keepalived
	kernels   []string // each box's kernel release
	kernel    string   // which kernel the lab boots, and why
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
	in := &bundleInputs{paths: paths, diagnosis: diagnose.Diagnose(boxes), tmp: tmp}
	f.scripts = filepath.Join(tmp, "scripts")
	if err := os.MkdirAll(f.scripts, 0o755); err != nil {
		return nil, err
	}
	for i, b := range boxes {
		node := fmt.Sprintf("d%d", i+1)
		in.configs = append(in.configs, b.ConfigPath)
		in.kernels = append(in.kernels, b.Bundle.Kernel)
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
	fmt.Fprintf(w, "  %s\n\nDiagnosis (lvslab diagnose)\n", j.bundles.kernel)
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
// A rules file reads as a file in its bundle: d1.tar.gz/iptables.rules.
func (in *bundleInputs) onBoxes(text string) string {
	for i, p := range in.paths {
		unpacked := filepath.Join(in.tmp, "bundles", strconv.Itoa(i))
		text = strings.ReplaceAll(text, filepath.Join(unpacked, "files"), "")
		text = strings.ReplaceAll(text, filepath.Join(unpacked, "iptables.rules"), filepath.Base(p)+"/iptables.rules")
	}
	return text
}

// series is a kernel release's major and minor version as one number
// (6.1.0-57-amd64: 6001), or -1.
func series(release string) int {
	var major, minor int
	if n, _ := fmt.Sscanf(release, "%d.%d", &major, &minor); n != 2 {
		return -1
	}
	return major*1000 + minor
}

// seriesSuite is the Debian suite whose kernel is of a series, for the
// hint to fetch it.
var seriesSuite = map[int]string{5010: "bullseye", 6001: "bookworm", 6012: "trixie"}

// vmKernel picks the micro-VM kernel for the boxes, unless --vm-kernel
// names one: the cached kernel of the boxes' series, else the nearest
// cached one; and says which.
func (in *bundleInputs) vmKernel(v *vmFlags, cached []kernel.Listed) string {
	want := series(in.kernels[0])
	if v.vmKernel != "" {
		return fmt.Sprintf("the boxes run Linux %s; a lab in a micro-VM boots %s (--vm-kernel)", in.kernels[0], v.vmKernel)
	}
	var best *kernel.Kernel
	for _, l := range cached {
		if best == nil || abs(series(l.Version)-want) <= abs(series(best.Version)-want) {
			best = l.Kernel
		}
	}
	if best == nil || want < 0 {
		return fmt.Sprintf("the boxes run Linux %s; a lab in a micro-VM boots the default kernel", in.kernels[0])
	}
	v.vmKernel = best.Version
	if series(best.Version) == want {
		return fmt.Sprintf("the boxes run Linux %s; a lab in a micro-VM boots %s, of the same series", in.kernels[0], best.Version)
	}
	hint := ""
	if s, ok := seriesSuite[want]; ok {
		hint = fmt.Sprintf("; lvslab kernel fetch --suite %s fetches one of theirs", s)
	}
	return fmt.Sprintf("the boxes run Linux %s; a lab in a micro-VM boots %s, the nearest cached%s", in.kernels[0], best.Version, hint)
}

func abs(n int) int { return max(n, -n) }
