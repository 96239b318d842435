// Package labtest has helpers for privileged tests that build labs: a root
// check that skips with a reason, and a leak check that proves a lab left
// nothing behind.
package labtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/vishvananda/netlink"
)

// RequireRoot skips the test unless it runs as root and not with -short;
// under CI=true not being root fails it (Missing): a CI run must not skip
// the privileged tests silently.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("privileged test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		Missing(t, "privileged test: needs root for network namespaces, veth and mounts (make test runs it as root)")
	}
}

// DefaultTopology is the built-in two-director topology.
func DefaultTopology(t testing.TB) *lab.Topology {
	t.Helper()
	topo, err := lab.ParseTopology(fixtures.DefaultTopologyName, fixtures.DefaultTopology)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// Build builds a lab with a fresh name under a temporary run directory and
// registers its Close followed by a leak check.
func Build(t testing.TB, topo *lab.Topology, opts lab.Options) *lab.Lab {
	t.Helper()
	RequireRoot(t)
	if opts.RunDir == "" {
		opts.RunDir = t.TempDir()
	}
	if opts.Name == "" {
		opts.Name = lab.RandomName()
	}
	snap := Snapshot(t)
	l, err := lab.Build(context.Background(), topo, opts)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
		snap.ExpectClean(t, opts.RunDir, l.Name)
	})
	return l
}

// HostState is what the host looks like before a lab exists.
type HostState struct {
	links []string
}

// Snapshot records the host's links, so ExpectClean can tell that a lab put
// nothing into the host's own namespace.
func Snapshot(t testing.TB) HostState {
	t.Helper()
	return HostState{links: hostLinks(t)}
}

func hostLinks(t testing.TB) []string {
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list host links: %v", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// ExpectClean fails the test if anything of the lab called name remains:
// a namespace, a run directory or mount, a process working in its run
// directory, or a link in the host namespace that was not there before.
func (h HostState) ExpectClean(t testing.TB, runDir, name string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(lab.NetnsDir, lab.Prefix+name+".*"))
	for _, ns := range left {
		t.Errorf("leak: namespace %s", ns)
	}
	dir := filepath.Join(runDir, name)
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("leak: run dir %s", dir)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), " "+dir+" ") {
		t.Errorf("leak: mount on %s", dir)
	}
	for _, p := range lab.ProcessesMentioning(dir + "/") {
		t.Errorf("leak: process %s", p)
	}
	if got := hostLinks(t); !slices.Equal(got, h.links) {
		t.Errorf("leak: host links changed: got %v, want %v", got, h.links)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil && strings.Contains(string(out), lab.Prefix+name+".") {
		t.Errorf("leak: ip netns list shows %s", out)
	}
}

// RequireTool skips the test unless the program is on PATH, naming the
// package to install. Under CI=true (GitHub Actions, and .ci/run) a
// missing tool fails the test instead: a CI run must not skip silently.
func RequireTool(t testing.TB, program, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		Missing(t, fmt.Sprintf("needs %s (install %s: make deps)", program, pkg))
	}
}

// Missing skips the test for why, or fails it under CI=true.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: missing tools fail)")
	}
	t.Skip(why)
}

// RequireIPVS skips the test unless the kernel has ip_vs (loading it if it
// can). With LVSLAB_REQUIRE_IPVS=1, as `make test` sets for its kexec runs,
// a missing ip_vs fails the test instead: CI must not skip silently.
func RequireIPVS(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	switch why, fail := MissingIPVS(); {
	case fail:
		t.Fatal(why)
	case why != "":
		t.Skip(why)
	}
}

// MissingIPVS says why IPVS tests cannot run here ("" when they can) and
// whether that must fail them rather than skip them; Ginkgo specs, which
// have no testing.TB, use it directly.
func MissingIPVS() (why string, fail bool) {
	if ok, reason := kernel.HostHasIPVS(); !ok {
		if os.Getenv("LVSLAB_REQUIRE_IPVS") == "1" {
			return "kernel IPVS required (LVSLAB_REQUIRE_IPVS=1) but missing: " + reason, true
		}
		return "needs kernel IPVS (" + reason + "): make test runs this through `lvslab kexec`", false
	}
	if err := kernel.LoadIPVS(); err != nil {
		return err.Error(), os.Getenv("LVSLAB_REQUIRE_IPVS") == "1"
	}
	return "", false
}

// Golden compares got with the file at path ("-want +got"); with
// LVSLAB_UPDATE_GOLDEN=1 it rewrites the file first.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if os.Getenv("LVSLAB_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// Accept listens on TCP addr (":3306") in box and accepts and closes
// every connection until the test ends: a realserver a TCP check passes.
func Accept(tb testing.TB, box *lab.Box, addr string) {
	tb.Helper()
	var ln net.Listener
	if err := box.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
}

// DirectorLab builds the default topology without MariaDB, each director
// node accepting on the MySQL port so a TCP check passes.
func DirectorLab(tb testing.TB) *lab.Lab {
	tb.Helper()
	l := Build(tb, DefaultTopology(tb), lab.Options{NoServices: true})
	for _, n := range l.Topo.Nodes {
		if n.HasRole(lab.RoleDirector) {
			Accept(tb, l.Box(n.Name), fmt.Sprintf(":%d", lab.MySQLPort))
		}
	}
	return l
}
