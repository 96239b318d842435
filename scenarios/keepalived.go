package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/coreos/go-iptables/iptables"
	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
)

// Implementation is a director implementation under test.
type Implementation interface {
	Name() string
	// Start configures and starts both directors of c in l, with fix.
	Start(ctx context.Context, l *lab.Lab, c Cluster, fix Fix) error
	// Stop stops director i: gracefully (it removes what it installed),
	// or by SIGKILL (it leaves everything behind).
	Stop(i int, graceful bool) error
	// Logs returns each director's log so far, by node.
	Logs() map[string]string
}

// Keepalived is the reference: Debian's keepalived 2.2.x, one per director
// namespace, configured as an operator writes it (fixtures/keepalived).
type Keepalived struct{ directors }

// Name implements Implementation.
func (*Keepalived) Name() string { return "keepalived" }

// directors holds the process an implementation runs on each director
// box, and stops them the same way for every implementation.
type directors struct {
	procs [2]*lab.Process
}

// Stop implements Implementation.
func (d *directors) Stop(i int, graceful bool) error {
	p := d.procs[i]
	if p == nil {
		return fmt.Errorf("director %d was not started", i)
	}
	if graceful {
		return p.Stop(lab.StopGrace)
	}
	p.Kill()
	return nil
}

// Logs implements Implementation.
func (d *directors) Logs() map[string]string {
	logs := map[string]string{}
	for _, p := range d.procs {
		if p != nil {
			data, err := os.ReadFile(p.Log)
			if err != nil {
				data = []byte(err.Error())
			}
			logs[p.Box] = string(data)
		}
	}
	return logs
}

var keepalivedConf = template.Must(template.New("keepalived.conf").Parse(fixtures.KeepalivedConf))

// KeepalivedConfig renders director i's keepalived.conf.
func KeepalivedConfig(c Cluster, i int, fix Fix) (string, error) {
	d := c.Directors[i]
	data := map[string]any{
		"Node": d.Node, "State": "BACKUP", "VRID": c.VRID, "Priority": d.Priority,
		"VIP": c.VIP, "Port": c.Port, "Realservers": c.Realservers(), "Mark": 0, "PeerMAC": c.Peer(i).MAC,
		"SyncDaemon": fix == FixBackupOnly,
	}
	if i == 0 {
		data["State"] = "MASTER"
	}
	if fix == FixFwmark {
		data["Mark"] = d.Mark
	}
	var b strings.Builder
	err := keepalivedConf.Execute(&b, data)
	return b.String(), err
}

// Start implements Implementation.
func (k *Keepalived) Start(ctx context.Context, l *lab.Lab, c Cluster, fix Fix) error {
	for i, d := range c.Directors {
		box := l.Box(d.Node)
		switch fix {
		case FixFwmark:
			g := director.Guard{VIP: c.VIP, Port: uint16(c.Port), Protocol: "tcp", PeerMAC: c.Peer(i).MAC, Mark: uint32(d.Mark)}
			if err := InsertMACGuard(box, g); err != nil {
				return err
			}
		case FixBackupOnly:
			// net.ipv4.vs.* exists once ip_vs is loaded.
			if ok, why := kernel.HostHasIPVS(); !ok {
				return fmt.Errorf("backup_only needs ip_vs: %s", why)
			}
			if err := box.SetSysctls(map[string]string{"net.ipv4.vs.backup_only": "1"}); err != nil {
				return err
			}
		}
		conf, err := KeepalivedConfig(c, i, fix)
		if err != nil {
			return err
		}
		dir := filepath.Join(l.Dir, d.Node, "keepalived")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		path := filepath.Join(dir, "keepalived.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return err
		}
		k.procs[i], err = box.Start("keepalived", []string{"keepalived", "--dont-fork", "--log-console", "--log-detail",
			"--use-file", path, "--pid", filepath.Join(dir, "keepalived.pid"),
			"--vrrp_pid", filepath.Join(dir, "vrrp.pid"), "--checkers_pid", filepath.Join(dir, "checkers.pid")})
		if err != nil {
			return err
		}
	}
	return nil
}

// InsertMACGuard installs the seed's rule as its operator does, straight
// into mangle PREROUTING; the rule text is the director's (one source).
// go-iptables execs iptables, which acts in the netns of the calling
// thread: hence box.Do.
func InsertMACGuard(box *lab.Box, g director.Guard) error {
	return box.Do(func() error {
		ipt, err := iptables.New()
		if err != nil {
			return fmt.Errorf("iptables in %s: %w (install iptables: make deps)", box.Name, err)
		}
		if err := ipt.Insert("mangle", "PREROUTING", 1, g.Rule()...); err != nil {
			return fmt.Errorf("insert MAC guard in %s: %w", box.Name, err)
		}
		return nil
	})
}
