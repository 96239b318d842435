package director

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
	"golang.org/x/sys/unix"
)

// TestIPVSSyncDaemon starts, lists and stops sync daemons in a lab box by
// generic netlink and checks each step against what ipvsadm reads.
func TestIPVSSyncDaemon(t *testing.T) {
	labtest.RequireIPVS(t)
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{NoServices: true})
	box := l.Box("d1")
	in := func(f func() error) error { return box.Do(f) }
	list := func() []SyncDaemon {
		t.Helper()
		var ds []SyncDaemon
		if err := in(func() (err error) { ds, err = SyncDaemons(); return err }); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ds, func(a, b SyncDaemon) int { return int(a.State) - int(b.State) })
		return ds
	}
	ipvsadm := func() string {
		t.Helper()
		var out bytes.Buffer
		if code, err := box.Run(context.Background(), []string{"ipvsadm", "-L", "--daemon"}, &out, &out); err != nil || code != 0 {
			t.Fatalf("ipvsadm -L --daemon: exit %d, %v: %s", code, err, out.String())
		}
		return out.String()
	}
	// The master with every option set; the backup with the kernel's
	// defaults, which a listing shows.
	master := SyncDaemon{State: SyncMaster, Interface: "eth0", SyncID: 51,
		MaxLen: 1400, Group: netip.MustParseAddr("224.0.0.82"), Port: 8850, TTL: 2}
	backup := SyncDaemon{State: SyncBackup, Interface: "eth0", SyncID: 51}
	backupListed := SyncDaemon{State: SyncBackup, Interface: "eth0", SyncID: 51,
		MaxLen: 1472, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1}

	if err := in(func() error { return startSyncDaemon(master) }); err != nil {
		t.Fatal(err)
	}
	if got := list(); !slices.Equal(got, []SyncDaemon{master}) {
		t.Errorf("after starting the master: %v", got)
	}
	if got, want := ipvsadm(), "master sync daemon (mcast=eth0, syncid=51, maxlen=1400, group=224.0.0.82, port=8850, ttl=2)\n"; got != want {
		t.Errorf("ipvsadm after starting the master: %q, want %q", got, want)
	}
	if err := in(func() error { return startSyncDaemon(master) }); !errors.Is(err, unix.EEXIST) {
		t.Errorf("second master: %v, want EEXIST", err)
	}
	// The VRRP transition to BACKUP: master stopped, backup started.
	if err := in(func() error { return switchSyncDaemon(backup) }); err != nil {
		t.Fatal(err)
	}
	if got := list(); !slices.Equal(got, []SyncDaemon{backupListed}) {
		t.Errorf("after switching to backup: %v, want %v", got, backupListed)
	}
	if got, want := ipvsadm(), backupListed.String()+"\n"; got != want {
		t.Errorf("ipvsadm after switching to backup: %q, want %q", got, want)
	}
	// A leftover backup daemon with another sync id is restarted as asked.
	other := backupListed
	other.SyncID = 7
	if err := in(func() error { return switchSyncDaemon(other) }); err != nil {
		t.Fatal(err)
	}
	if got := list(); !slices.Equal(got, []SyncDaemon{other}) {
		t.Errorf("after restarting the backup with syncid 7: %v", got)
	}
	if err := in(func() error { return stopSyncDaemon(SyncBackup) }); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("after stopping: %v", got)
	}
	if err := in(func() error { return stopSyncDaemon(SyncMaster) }); !errors.Is(err, unix.ESRCH) {
		t.Errorf("stopping a daemon that is not running: %v, want ESRCH", err)
	}
}
