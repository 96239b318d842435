package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// ping runs iputils ping inside a box: an observer independent of lab.
func ping(t *testing.T, l *lab.Lab, from, addr string) {
	t.Helper()
	ns := strings.TrimPrefix(l.Box(from).Path(), lab.NetnsDir+"/")
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W2", addr).CombinedOutput()
	if err != nil {
		t.Errorf("ping %s from %s: %v\n%s", addr, from, err, out)
	}
}

func TestBuildTwoDirector(t *testing.T) {
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{})
	for _, addr := range []string{"192.168.1.233", "192.168.1.213"} {
		ping(t, l, "client", addr)
	}
	ping(t, l, "d1", "192.168.1.213")

	// The VIP is on lo of each realserver, and arp_ignore keeps it quiet.
	for _, d := range []string{"d1", "d2"} {
		lo, err := l.Box(d).Netlink().LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := l.Box(d).Netlink().AddrList(lo, 0)
		if !strings.Contains(fmt.Sprint(addrs), "192.168.1.200/32") {
			t.Errorf("%s lo: got %v, want 192.168.1.200/32", d, addrs)
		}
	}

	// Each MariaDB answers the client with its own server_id.
	for _, tc := range []struct {
		node, addr string
		want       int
	}{{"d1", "192.168.1.233:3306", 1}, {"d2", "192.168.1.213:3306", 2}} {
		db := l.Box("client").OpenMySQL(tc.addr, 2*time.Second)
		var id, rows int
		err := db.QueryRowContext(context.Background(), "SELECT @@server_id, (SELECT COUNT(*) FROM lab.seed)").Scan(&id, &rows)
		db.Close()
		if err != nil {
			t.Fatalf("query %s from client: %v", tc.addr, err)
		}
		if id != tc.want || rows != 3 {
			t.Errorf("%s: got server_id %d with %d seed rows, want %d with 3", tc.node, id, rows, tc.want)
		}
	}
}

func TestBuildArpIgnoreKeepsVIPQuiet(t *testing.T) {
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	// Only a MASTER holding the VIP on eth0 may answer ARP for it; with the
	// VIP on lo alone, nobody does.
	ns := strings.TrimPrefix(l.Box("client").Path(), lab.NetnsDir+"/")
	cmd := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "192.168.1.200")
	out, _ := cmd.CombinedOutput()
	// ping exits 1 when no reply came, 2 on other errors (no ping, bad netns).
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("ping VIP with no MASTER: exit %d, want 1 (no reply: arp_ignore=1 on the realservers)\n%s", code, out)
	}
}

// A route of scope link reaches an address of another subnet on the
// link itself, as a check lab's client reaches a VIP outside the
// directors' subnet; without it the kernel has no route.
func TestBuildRouteOnLink(t *testing.T) {
	topo, err := lab.ParseTopology("routes.yaml", []byte(`name: routes
bridges:
  - name: lan
nodes:
  - name: a
    interfaces:
      - {name: eth0, bridge: lan, addresses: [10.0.0.1/24, 203.0.113.1/24]}
  - name: client
    roles: [client]
    interfaces:
      - {name: eth0, bridge: lan, addresses: [10.0.0.2/24], routes: [203.0.113.1/32]}
  - name: other
    interfaces:
      - {name: eth0, bridge: lan, addresses: [10.0.0.3/24]}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Build(t, topo, lab.Options{NoServices: true})
	ping(t, l, "client", "203.0.113.1")
	ns := strings.TrimPrefix(l.Box("other").Path(), lab.NetnsDir+"/")
	cmd := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "203.0.113.1")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "unreachable") {
		t.Errorf("ping 203.0.113.1 from a node without the route: exit %d, want 2 (network unreachable)\n%s", code, out)
	}
}

func TestTwoLabsFromOneTopology(t *testing.T) {
	topo := labtest.DefaultTopology(t)
	a := labtest.Build(t, topo, lab.Options{NoServices: true})
	b := labtest.Build(t, topo, lab.Options{NoServices: true})
	for _, l := range []*lab.Lab{a, b} {
		ping(t, l, "client", "192.168.1.233")
	}
	if a.Box("d1").Path() == b.Box("d1").Path() {
		t.Fatalf("two labs share namespace %s", a.Box("d1").Path())
	}
}

func TestProcessStopAndKill(t *testing.T) {
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	// The shell ignores SIGTERM, and so does its sleep (an ignored signal
	// stays ignored across exec): Stop must fall back to SIGKILL.
	p, err := l.Box("d1").Start("sleeper", []string{"sh", "-c", "trap '' TERM; echo ignoring; sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	for data, _ := os.ReadFile(p.Log); !strings.Contains(string(data), "ignoring"); data, _ = os.ReadFile(p.Log) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the process ended with %v; want killed by SIGKILL after ignoring SIGTERM", err)
	}
	// The sleep died with the group; init reaps it soon after.
	err = syscall.Kill(-p.Pid(), 0)
	for i := 0; i < 200 && err == nil; i++ {
		time.Sleep(10 * time.Millisecond)
		err = syscall.Kill(-p.Pid(), 0)
	}
	if !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d not killed (its sleep): kill 0 gives %v", p.Pid(), err)
	}
}

func TestBuildRejectsExistingLab(t *testing.T) {
	topo := labtest.DefaultTopology(t)
	a := labtest.Build(t, topo, lab.Options{NoServices: true})
	_, err := lab.Build(context.Background(), topo, lab.Options{Name: a.Name, RunDir: t.TempDir(), NoServices: true})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second build of lab %s: got %v, want an 'already exists' error", a.Name, err)
	}
	ping(t, a, "client", "192.168.1.213") // the first lab is untouched
}

// TestBuildFailureTearsDown makes Build fail half-way (a sysctl the kernel
// does not have, on the last node) and proves nothing it built remains.
func TestBuildFailureTearsDown(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.DefaultTopology(t)
	topo.Nodes[2].Sysctls = map[string]string{"net.ipv4.conf.all.no_such_knob": "1"}
	runDir, name := t.TempDir(), lab.RandomName()
	snap := labtest.Snapshot(t)
	_, err := lab.Build(context.Background(), topo, lab.Options{Name: name, RunDir: runDir, NoServices: true})
	if err == nil || !strings.Contains(err.Error(), "no_such_knob") {
		t.Fatalf("got %v, want an error naming the sysctl", err)
	}
	snap.ExpectClean(t, runDir, name)
}
