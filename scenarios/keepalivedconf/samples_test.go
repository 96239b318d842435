package keepalivedconf

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/lvslab/lvslab/lab/labtest"
)

// samplesDir holds the configs Debian's keepalived package installs: a
// corpus nobody here wrote, read where it is, never copied.
const samplesDir = "/usr/share/doc/keepalived/samples"

// keepalivedUnknown matches keepalived -t's report of a keyword it does
// not know: "(FILE: Line N) Unknown keyword 'X'".
var keepalivedUnknown = regexp.MustCompile(`\(.*: Line (\d+)\) Unknown keyword '([^']*)'`)

// TestDebianSamples parses every sample and compares with keepalived's
// own config check: every keyword keepalived calls unknown is one this
// package keeps as unmodelled, at the same line; the samples with @
// conditionals are refused at their first @ line; the rest parse.
func TestDebianSamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(samplesDir, "keepalived.conf.*"))
	if len(files) == 0 {
		labtest.Missing(t, "needs keepalived's samples in "+samplesDir+" (install keepalived: make deps)")
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		labtest.Missing(t, "needs keepalived (make deps)")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if filepath.Base(f) == "keepalived.conf.conditional_conf" {
				var e *Error
				if !errors.As(err, &e) || e.Pos.Line != 3 {
					t.Fatalf("got %v, want the @ conditional refused at line 3", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, _ := exec.Command("keepalived", "-t", "-l", "-f", f).CombinedOutput()
			unmodelled := map[string]bool{}
			for _, u := range c.Unmodelled {
				unmodelled[strconv.Itoa(u.Pos.Line)+" "+u.Key] = true
			}
			for _, m := range keepalivedUnknown.FindAllStringSubmatch(string(out), -1) {
				if !unmodelled[m[1]+" "+m[2]] {
					t.Errorf("keepalived -t: unknown keyword %q at line %s; the parser did not keep it as unmodelled", m[2], m[1])
				}
			}
		})
	}
}

// TestDebianSamplesModel spot-checks what the samples say: addresses,
// fwmarks, groups, checkers.
func TestDebianSamplesModel(t *testing.T) {
	load := func(name string) *Config {
		t.Helper()
		c, err := Load(filepath.Join(samplesDir, name))
		if err != nil {
			labtest.Missing(t, "needs keepalived's samples: "+err.Error())
		}
		return c
	}
	fw := load("keepalived.conf.fwmark")
	if len(fw.VirtualServers) == 0 || fw.VirtualServers[0].Mark != 1 || fw.VirtualServers[0].Key() != "FWM 1" {
		t.Errorf("fwmark sample: %+v", fw.VirtualServers)
	}
	g := load("keepalived.conf.virtual_server_group")
	vsg := g.ServerGroups["VSG_1"]
	if vsg == nil || len(vsg.Entries) != 6 || vsg.Entries[3].Last.String() != "192.168.200.10" || vsg.Entries[5].Mark != 2 {
		t.Fatalf("virtual_server_group sample: %+v", vsg)
	}
	if vs := g.VirtualServers[0]; vs.Group != "VSG_1" || vs.Persistence != 50 || len(vs.RealServers) != 2 || vs.RealServers[0].Checks[0].Kind != HTTPGet {
		t.Errorf("virtual_server group VSG_1: %+v", vs)
	}
	mc := load("keepalived.conf.misc_check_arg")
	if ck := mc.VirtualServers[0].RealServers[0].Checks[0]; ck.Kind != MiscCheck || ck.MiscPath != "/usr/local/bin/script.sh arg1 arg2" {
		t.Errorf("misc_check_arg sample: %+v", ck)
	}
	v := load("keepalived.conf.vrrp")
	if in := v.Instances[0]; in.Name != "VI_1" || in.VRID != 51 || len(in.VIPs) == 0 {
		t.Errorf("vrrp sample: %+v", in)
	}
}
