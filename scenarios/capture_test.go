package scenarios

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/lvslab/lvslab/lab/labtest"
)

// segment builds an Ethernet frame carrying a TCP segment from the client
// to the VIP, as a director forwards it in DR mode: src is the sending
// MAC, the IP header is the client's but for the TTL.
func segment(src net.HardwareAddr, ttl byte, ipid uint16, seq uint32) Frame {
	d := make([]byte, 14+20+20)
	copy(d[0:6], mustMAC("02:00:00:00:00:01"))
	copy(d[6:12], src)
	binary.BigEndian.PutUint16(d[12:], 0x0800)
	ip := d[14:]
	ip[0], ip[8], ip[9] = 0x45, ttl, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	binary.BigEndian.PutUint16(ip[4:], ipid)
	copy(ip[12:16], []byte{192, 168, 1, 100})
	copy(ip[16:20], []byte{192, 168, 1, 200})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 3306)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 0x50, 0x02 // SYN
	return Frame{At: time.Unix(1764000000, 0), Len: len(d), Data: d}
}

// datagram is segment's frame as a UDP datagram: 8 bytes of UDP header.
func datagram(src net.HardwareAddr, ttl byte, ipid uint16) Frame {
	f := segment(src, ttl, ipid, 0)
	f.Data = f.Data[:14+20+8]
	f.Data[14+9] = 17
	f.Len = len(f.Data)
	return f
}

func TestCountBounces(t *testing.T) {
	c := testCluster(t)
	d1, d2, client := c.Directors[0].MAC, c.Directors[1].MAC, mustMAC("02:00:c0:a8:01:64")
	dirs := []net.HardwareAddr{d1, d2}
	for _, tc := range []struct {
		name   string
		frames []Frame
		want   Bounces
	}{
		{"forwarded once", []Frame{segment(client, 64, 1, 100), segment(d1, 63, 1, 100)}, Bounces{Forwarded: 1, MaxDepth: 1}},
		{"client retransmits: same TTL again", []Frame{segment(d1, 63, 1, 100), segment(d1, 63, 1, 100)}, Bounces{Forwarded: 1, MaxDepth: 1}},
		{"ping-pong", []Frame{segment(d1, 63, 7, 5), segment(d2, 62, 7, 5), segment(d1, 61, 7, 5), segment(d1, 63, 8, 9)},
			Bounces{Forwarded: 2, Bounced: 1, MaxDepth: 3}},
		{"client frames only", []Frame{segment(client, 64, 1, 100)}, Bounces{}},
		{"UDP ping-pong", []Frame{datagram(d1, 63, 3), datagram(d2, 62, 3), datagram(d1, 63, 4)}, Bounces{Forwarded: 2, Bounced: 1, MaxDepth: 2}},
	} {
		if got := countBounces(tc.frames, dirs, c.VIP, 3306); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestWritePcapng checks that tcpdump reads what WritePcapng writes, and
// that each frame names the bridge port it came in by.
func TestWritePcapng(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		labtest.Missing(t, "needs tcpdump (install tcpdump: make deps)")
	}
	c := testCluster(t)
	f1, f2 := segment(c.Directors[0].MAC, 63, 7, 5), segment(c.Directors[1].MAC, 62, 7, 5)
	f1.Port, f2.Port = 4, 6
	var b bytes.Buffer
	if err := writePcapng(&b, []Frame{f1, f2, f1}, map[int]string{4: "d1", 6: "d2"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.pcapng")
	os.WriteFile(path, b.Bytes(), 0o644)
	out, err := exec.Command("tcpdump", "-n", "-e", "-v", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	for _, want := range []string{"02:00:c0:a8:01:e9 > 02:00:00:00:00:01", "ttl 63", "ttl 62", "192.168.1.100.40000 > 192.168.1.200.3306: Flags [S]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tcpdump output lacks %q:\n%s", want, out)
		}
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(b.Bytes()), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for {
		_, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, intf.Name)
	}
	if got := strings.Join(ports, " "); got != "d1 d2 d1" {
		t.Errorf("frames came in by %q, want \"d1 d2 d1\"", got)
	}
}

// TestFromClients counts what reached a box from clients, not what a
// director forwarded to it nor what went to the other box.
func TestFromClients(t *testing.T) {
	c := testCluster(t)
	d1, d2, client := c.Directors[0].MAC, c.Directors[1].MAC, mustMAC("02:00:c0:a8:01:64")
	to := func(f Frame, dst []byte) Frame {
		f.Data = append([]byte(nil), f.Data...)
		copy(f.Data[0:6], dst)
		return f
	}
	frames := []Frame{
		to(segment(client, 64, 1, 1), d2), to(segment(client, 64, 2, 2), d2), // clients to d2
		to(segment(d1, 63, 3, 3), d2),     // d1 forwarded to d2
		to(segment(client, 64, 4, 4), d1), // a client to d1
	}
	if got := FromClients(frames, d2, []net.HardwareAddr{d1, d2}, c.VIP, 3306); got != 2 {
		t.Errorf("FromClients to d2 = %d, want 2", got)
	}
}
