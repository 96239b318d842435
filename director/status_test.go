package director

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatusText(t *testing.T) {
	st := Status{VRID: 51, Interface: "eth0", Address: "192.168.1.213/24", State: "BACKUP", Priority: 100,
		Since: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Transitions: 1, Master: "192.168.1.233",
		Guard: GuardStatus{Mode: GuardFwmark, PeerMAC: "02:00:c0:a8:01:e9", PeerMACFrom: "adverts",
			Rule: "-d 192.168.1.200/32 -p tcp --dport 3306 -m mac ! --mac-source 02:00:c0:a8:01:e9 -j MARK --set-mark 0x4"},
		Services: []ServiceStatus{{Service: "FWM 4", Scheduler: "rr", Conns: 7, InPkts: 70, Realservers: []RealserverStatus{
			{Address: "192.168.1.233:3306", InKernel: true, Weight: 1, Up: true, Check: "ok", ActiveConns: 2, Conns: 4},
			{Address: "192.168.1.213:3306", InKernel: true, Weight: 0, Up: false, Check: "connection refused"},
		}}}}
	var b strings.Builder
	st.WriteText(&b)
	want := `vrrp: vrid 51 on eth0 (192.168.1.213/24), BACKUP priority 100 since 2026-11-25T12:00:00Z, 1 transitions, master 192.168.1.233
guard: fwmark, peer MAC 02:00:c0:a8:01:e9 (from adverts)
  rule: -d 192.168.1.200/32 -p tcp --dport 3306 -m mac ! --mac-source 02:00:c0:a8:01:e9 -j MARK --set-mark 0x4
FWM 4 rr: 7 conns, 70/0 pkts in/out
  -> 192.168.1.233:3306 up; weight 1, 2 active, 0 inactive, 4 conns
  -> 192.168.1.213:3306 DOWN: connection refused; weight 0, 0 active, 0 inactive, 0 conns
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestStatusSocketOwnsOnlyWhatItMade: the status server refuses to replace
// a file that is not a socket, and on close removes its socket and only a
// directory it created.
func TestStatusSocketOwnsOnlyWhatItMade(t *testing.T) {
	ask := func(context.Context) (Status, error) { return Status{}, nil }
	dir := t.TempDir()
	victim := filepath.Join(dir, "passwd")
	os.WriteFile(victim, []byte("root:x:0:0\n"), 0o644)
	if _, err := serveStatus(StatusConfig{Socket: victim}, ask); err == nil || !strings.Contains(err.Error(), "regular file is there") {
		t.Errorf("socket over a regular file: %v, want refused", err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "root:x:0:0\n" {
		t.Errorf("the file was touched: %q", data)
	}
	for _, tc := range []struct {
		name    string
		socket  string
		dirLeft bool
	}{
		{"directory there before", filepath.Join(dir, "existing", "d.sock"), true},
		{"directory made for it", filepath.Join(dir, "made", "d.sock"), false},
	} {
		if tc.dirLeft {
			os.Mkdir(filepath.Dir(tc.socket), 0o755)
		}
		srv, err := serveStatus(StatusConfig{Socket: tc.socket}, ask)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		srv.Close()
		_, sockErr := os.Lstat(tc.socket)
		_, dirErr := os.Stat(filepath.Dir(tc.socket))
		if !errors.Is(sockErr, os.ErrNotExist) || (dirErr == nil) != tc.dirLeft {
			t.Errorf("%s: after close, socket: %v, directory: %v; want the socket gone, the directory left=%v", tc.name, sockErr, dirErr, tc.dirLeft)
		}
	}
}
