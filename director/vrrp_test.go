package director

import (
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// capturedAdvert reads fixtures/vrrp: an Ethernet frame keepalived 2.2.7
// sent in the lab. It returns the source MAC, IP addresses and VRRP bytes.
func capturedAdvert(t *testing.T) (net.HardwareAddr, netip.Addr, netip.Addr, []byte) {
	t.Helper()
	data, err := os.ReadFile("../fixtures/vrrp/keepalived-2.2.7-advert.hex")
	if err != nil {
		t.Fatal(err)
	}
	var h strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "#") {
			h.WriteString(strings.TrimSpace(line))
		}
	}
	frame, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseIPv4(frame[14:]) // what the daemon's packet socket delivers
	if err != nil {
		t.Fatal(err)
	}
	if p.Protocol != VRRPProto || p.TTL != 255 {
		t.Fatalf("fixture: protocol %d TTL %d, want 112 and 255", p.Protocol, p.TTL)
	}
	return net.HardwareAddr(frame[6:12]), p.Src, p.Dst, p.Payload
}

func TestParseKeepalivedAdvert(t *testing.T) {
	mac, src, dst, msg := capturedAdvert(t)
	a, err := parseAdvert(src, dst, msg)
	if err != nil {
		t.Fatal(err)
	}
	want := Advert{VRID: 51, Priority: 150, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.200")}}
	if diff := cmp.Diff(want, a, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("advert (-want +got):\n%s", diff)
	}
	if mac.String() != "02:00:c0:a8:01:e9" || dst != VRRPGroup {
		t.Errorf("frame from %s to %s, want d1's MAC to 224.0.0.18", mac, dst)
	}
	// Our encoding of the same advert is byte for byte keepalived's.
	if got := a.Marshal(src, dst); !cmp.Equal(got, msg) {
		t.Errorf("Marshal:\n got %x\nwant %x", got, msg)
	}
}

func TestParseAdvertRejects(t *testing.T) {
	_, src, dst, msg := capturedAdvert(t)
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		src    netip.Addr
	}{
		{"flipped bit", func(b []byte) []byte { b[2] ^= 1; return b }, src},
		{"other source (pseudo-header)", func(b []byte) []byte { return b }, netip.MustParseAddr("192.168.1.213")},
		{"VRRPv2", func(b []byte) []byte { b[0] = 0x21; return b }, src},
		{"truncated", func(b []byte) []byte { return b[:10] }, src},
	} {
		b := tc.mutate(append([]byte(nil), msg...))
		if _, err := parseAdvert(tc.src, dst, b); !errors.Is(err, ErrBadAdvert) {
			t.Errorf("%s: got %v, want ErrBadAdvert", tc.name, err)
		}
	}
}

func TestAdvertRoundTrip(t *testing.T) {
	src := netip.MustParseAddr("192.168.1.213")
	a := Advert{VRID: 7, Priority: 0, Interval: 2550 * time.Millisecond,
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}}
	got, err := parseAdvert(src, VRRPGroup, a.Marshal(src, VRRPGroup))
	if err != nil || got.Priority != 0 || got.Interval != a.Interval || len(got.Addrs) != 2 {
		t.Errorf("round trip: %+v, %v", got, err)
	}
}
