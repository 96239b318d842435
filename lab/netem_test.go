package lab_test

import (
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// rtt is one ping's round trip from box from to addr.
func rtt(t *testing.T, l *lab.Lab, from, addr string) time.Duration {
	t.Helper()
	ns := strings.TrimPrefix(l.Box(from).Path(), lab.NetnsDir+"/")
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W3", addr).CombinedOutput()
	m := regexp.MustCompile(`time=([0-9.]+) ms`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("ping %s from %s: %v\n%s", addr, from, err, out)
	}
	ms, _ := strconv.ParseFloat(string(m[1]), 64)
	return time.Duration(ms * float64(time.Millisecond))
}

// reaches says whether one IP packet of protocol proto sent from box from
// to addr arrives in box to.
func reaches(t *testing.T, l *lab.Lab, from, to, addr string, proto int) bool {
	t.Helper()
	var rx net.PacketConn
	err := l.Box(to).Do(func() (err error) {
		rx, err = net.ListenPacket("ip4:"+strconv.Itoa(proto), "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	err = l.Box(from).Do(func() error {
		tx, err := net.ListenPacket("ip4:"+strconv.Itoa(proto), "0.0.0.0")
		if err != nil {
			return err
		}
		defer tx.Close()
		_, err = tx.WriteTo([]byte("lvslab netem test"), &net.IPAddr{IP: net.ParseIP(addr)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rx.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			return false
		}
		if strings.Contains(string(buf[:n]), "lvslab netem test") {
			return true
		}
	}
}

// TestIPVSNetem: impairments as the kernel applies them (named TestIPVS*
// to run in the guest kernel: the host's lacks sch_netem and sch_prio). A
// delay toward a node slows what reaches it and goes with its undo; a
// filtered loss drops VRRP from one director's MAC and nothing else.
func TestIPVSNetem(t *testing.T) {
	labtest.RequireIPVS(t)
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	if d := rtt(t, l, "client", "192.168.1.233"); d >= 100*time.Millisecond {
		t.Fatalf("unimpaired round trip %s", d)
	}
	undo, err := l.Impair("d1", "eth0", true, lab.Match{}, lab.Netem{Delay: "100ms"})
	if err != nil {
		t.Fatal(err)
	}
	if d := rtt(t, l, "client", "192.168.1.233"); d < 100*time.Millisecond {
		t.Errorf("round trip to d1 with 100ms toward it: %s", d)
	}
	if d := rtt(t, l, "client", "192.168.1.213"); d >= 100*time.Millisecond {
		t.Errorf("round trip to d2, not impaired: %s", d)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if d := rtt(t, l, "client", "192.168.1.233"); d >= 100*time.Millisecond {
		t.Errorf("round trip to d1 after the undo: %s", d)
	}

	d1MAC := l.Topo.Node("d1").Interfaces[0].HardwareAddr()
	if _, err := l.Impair("d2", "eth0", true, lab.Match{Protocol: 112, SrcMAC: d1MAC}, lab.Netem{Loss: 100}); err != nil {
		t.Fatal(err)
	}
	if reaches(t, l, "d1", "d2", "192.168.1.213", 112) {
		t.Error("VRRP from d1 reached d2 through a 100% loss on it")
	}
	if !reaches(t, l, "client", "d2", "192.168.1.213", 112) {
		t.Error("VRRP from the client (another MAC) did not reach d2")
	}
	if !reaches(t, l, "d1", "d2", "192.168.1.213", 1) {
		t.Error("ICMP from d1 (another protocol) did not reach d2")
	}
	if !reaches(t, l, "d2", "d1", "192.168.1.233", 112) {
		t.Error("VRRP from d2 to d1 (the other direction) did not arrive")
	}
}
