package collect

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

// A box's config as found in the field: an include, a notify script with
// a password in its arguments, a MISC_CHECK script with one inside.
const (
	boxConfig = `global_defs {
   router_id db1
}
include conf.d/*.conf
virtual_server fwmark 3 {
    delay_loop 2
    lb_algo rr
    lb_kind DR
    real_server 192.168.1.233 3306 {
        MISC_CHECK {
            misc_path "SCRIPTS/check_slave.sh 192.168.1.233"
        }
    }
}
`
	boxInstance = `vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        192.168.1.200/24 dev eth0
    }
    notify_master "SCRIPTS/notify.sh master -psecretpw"
}
`
	checkScript = "#!/bin/sh\nmysql -uroot --password=hunter2 -e 'show slave status'\n"
	boxRules    = "*mangle\n-A PREROUTING -d 192.168.1.200/32 -p tcp -m tcp --dport 3306 -m mac ! --mac-source 02:00:c0:a8:01:d5 -j MARK --set-xmark 0x3/0xffffffff\nCOMMIT\n"
)

// writeBox writes the config, its include and scripts under dir.
func writeBox(t *testing.T, dir string) string {
	t.Helper()
	files := map[string]string{
		"keepalived.conf":  strings.ReplaceAll(boxConfig, "SCRIPTS", dir),
		"conf.d/vi_1.conf": strings.ReplaceAll(boxInstance, "SCRIPTS", dir),
		"check_slave.sh":   checkScript,
		"notify.sh":        "#!/bin/sh\nexit 0\n",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "keepalived.conf")
}

// boxState is what collect must leave as it found it: the box's rules,
// addresses, routes, neighbours and sysctls, the host's modules, and the
// config's files with their times.
func boxState(t *testing.T, box *lab.Box, dir string) string {
	t.Helper()
	var out bytes.Buffer
	for _, argv := range [][]string{{"sh", "-c", "iptables-save | grep -v '^#'"}, {"nft", "list", "ruleset"}, {"ip", "-d", "addr"}, {"ip", "route", "show", "table", "all"},
		{"ip", "neigh"}, {"sh", "-c", "grep -r . /proc/sys/net/ipv4/conf/ /proc/sys/net/ipv4/vs/ 2>/dev/null | sort"}, {"cat", "/proc/modules"}} {
		out.WriteString("$ " + strings.Join(argv, " ") + "\n")
		if _, err := box.Run(context.Background(), argv, &out, &out); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, _ := os.ReadFile(p)
		out.WriteString(p + " " + info.ModTime().String() + " " + info.Mode().String() + "\n" + string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestCollectInLab collects from a director box of a lab (on this host: no
// IPVS, which collect says rather than load): it changes nothing, keeps
// the config with its include and scripts, redacted, and reads back.
func TestCollectInLab(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "keepalived", "keepalived")
	labtest.RequireTool(t, "iptables-restore", "iptables")
	l, err := lab.Build(context.Background(), labtest.DefaultTopology(t), lab.Options{NoServices: true, RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	box := l.Box("d1")
	if _, err := box.Run(context.Background(), []string{"sh", "-c", "printf '" + strings.ReplaceAll(boxRules, "\n", `\n`) + "' | iptables-restore"}, os.Stderr, os.Stderr); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writeBox(t, dir)
	before := boxState(t, box, dir)
	var b *Bundle
	err = box.Do(func() (err error) {
		b, err = Collect(context.Background(), Options{Config: cfg, Window: 2 * time.Second, Interval: 500 * time.Millisecond})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := boxState(t, box, dir); after != before {
		t.Errorf("collect changed the box:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	out := filepath.Join(t.TempDir(), "d1.tar.gz")
	if err := b.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	got, err := Read(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{FileName(cfg), FileName(filepath.Join(dir, "conf.d/vi_1.conf")), FileName(filepath.Join(dir, "check_slave.sh")),
		FileName(filepath.Join(dir, "notify.sh")), "iptables.rules"} {
		if _, ok := got.File(name); !ok {
			t.Errorf("bundle lacks %s; has %v", name, got.Names())
		}
	}
	inst, _ := got.File(FileName(filepath.Join(dir, "conf.d/vi_1.conf")))
	script, _ := got.File(FileName(filepath.Join(dir, "check_slave.sh")))
	for _, secret := range []string{"s3cret", "secretpw", "hunter2"} {
		if bytes.Contains(inst, []byte(secret)) || bytes.Contains(script, []byte(secret)) {
			t.Errorf("the bundle keeps the secret %q", secret)
		}
	}
	if !strings.Contains(got.Manifest(), "line 8: auth_pass") || !strings.Contains(got.Manifest(), "line 13: a password") {
		t.Errorf("the MANIFEST does not say what was redacted where:\n%s", got.Manifest())
	}
	if rules, _ := got.File("iptables.rules"); !bytes.Contains(rules, []byte("--mac-source 02:00:c0:a8:01:d5")) {
		t.Errorf("iptables.rules lacks the box's guard:\n%s", rules)
	}
	if got.IPVSAbsent == "" && len(got.IPVS) == 0 {
		t.Errorf("no IPVS table and no word why")
	}
	if len(got.Live.Samples) < 4 || len(got.Live.Samples[0].Held) != 0 || got.Live.VIPs[0] != "192.168.1.200" {
		t.Errorf("live: %+v; want 4 or more samples, the VIP 192.168.1.200 not held (no director runs)", got.Live)
	}
	if got.Sysctls["net.ipv4.conf.eth0.arp_ignore"] == "" || len(got.Links) < 2 {
		t.Errorf("sysctls %v, links %v: want eth0's arp_ignore and lo, eth0", got.Sysctls, got.Links)
	}
}

// TestCollectRefuses: not root, no keepalived, no config: one line naming
// what is missing.
func TestCollectRefuses(t *testing.T) {
	labtest.RequireRoot(t)
	_, err := Collect(context.Background(), Options{Config: "/nonexistent/keepalived.conf"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/keepalived.conf") {
		t.Errorf("a missing config: %v; want an error naming it", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := Collect(context.Background(), Options{Config: "/etc/hostname"}); err == nil || !strings.Contains(err.Error(), "install keepalived") {
		t.Errorf("no keepalived: %v; want install keepalived", err)
	}
}
