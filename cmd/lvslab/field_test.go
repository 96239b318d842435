package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/lvslab/lvslab/fixtures/field"
	"github.com/lvslab/lvslab/lab/labtest"
)

// Every case of the field corpus plans as docs/field.md says: a case
// that runs gets a lab and exits 1 exactly when something is prescribed;
// a refused one names its shape, at exit 2 or as why the lab cannot run
// it. The table lists every directory of fixtures/field and no other.
func TestFieldCorpus(t *testing.T) {
	cases, err := field.Read("../../docs/field.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 20 {
		t.Fatalf("docs/field.md lists %d cases, want at least 20", len(cases))
	}
	dirs, err := os.ReadDir("../../fixtures/field")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.IsDir() && !slices.ContainsFunc(cases, func(c field.Case) bool { return c.Name == d.Name() }) {
			t.Errorf("fixtures/field/%s is not in docs/field.md's table", d.Name())
		}
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if confs, _, _ := c.Files("../../fixtures/field"); len(confs) < 2 {
				t.Fatalf("%s: %d configs", c.Name, len(confs))
			}
			stdout, stderr, code := cli(t, append([]string{"check", "--plan"}, c.Args("../../fixtures/field")...)...)
			const cannot = "The lab cannot run this pair yet: "
			if shape, refused := c.Refused(); refused {
				if !(code == 2 && strings.Contains(stderr, shape) || strings.Contains(stdout, cannot) && strings.Contains(stdout[strings.Index(stdout, cannot):], shape)) {
					t.Errorf("want it refused naming %q; exit %d\nstdout: %s\nstderr: %s", shape, code, stdout, stderr)
				}
				return
			}
			want := 1
			if c.Prescribed == "-" {
				want = 0
			}
			if code != want || strings.Contains(stdout, cannot) {
				t.Errorf("want a lab and exit %d (prescribed %s); exit %d\nstdout: %s\nstderr: %s", want, c.Prescribed, code, stdout, stderr)
			}
		})
	}
}

// What keepalived itself says of a config, misspelt keywords and an
// lb_algo it does not know, is shown at the user's file and line.
func TestKeepalivedSays(t *testing.T) {
	labtest.RequireTool(t, "keepalived", "keepalived")
	dir := "../../fixtures/field/misspelt/"
	stdout, stderr, code := cli(t, "check", "--plan", dir+"db1.conf", dir+"db2.conf")
	for _, want := range []string{
		"keepalived -t: (" + dir + "db1.conf: Line 4) Unknown keyword 'lvs_sync_daemon_inteface'",
		"keepalived -t: (" + dir + "db2.conf: Line 13) Unknown keyword 'garp_master_dealy'",
		"keepalived -t: Virtual server [192.168.1.200]:tcp:3306: no scheduler set, setting default 'wlc'",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("exit %d, no %q in:\n%s%s", code, want, stdout, stderr)
		}
	}
	if strings.Contains(stdout, "lvslab-keepalived-t-") {
		t.Errorf("a path of the lab's copy in the output:\n%s", stdout)
	}
}
