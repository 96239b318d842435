package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
)

// Implementation is a director implementation under test.
type Implementation interface {
	Name() string
	// Start configures and starts director i of c in l, with fix; started
	// again after Stop, it takes over what the stopped one left.
	Start(ctx context.Context, l *lab.Lab, c Cluster, i int, fix Fix) error
	// Stop stops director i: gracefully (it removes what it installed),
	// or by SIGKILL (it leaves everything behind).
	Stop(i int, graceful bool) error
	// Logs returns each director's log so far, by node.
	Logs() map[string]string
	// Signal sends sig to director i's processes: SIGSTOP, SIGCONT.
	Signal(i int, sig syscall.Signal) error
}

// Keepalived is the reference: Debian's keepalived 2.2.x, one per director
// namespace, configured as an operator writes it (fixtures/keepalived).
type Keepalived struct {
	directors
	// Sync is how the backup_only fix's sync daemon is configured; the
	// zero value is SyncForms[0].
	Sync SyncForm
	// Advert is advert_int (0: 1 s); under VRRP version 3, which the
	// lab's keepalived.conf sets, down to centiseconds.
	Advert time.Duration
}

// Timings are the adverts' interval: the cluster's waits follow it.
func (k *Keepalived) Timings() Timers { return Timers{Advert: k.Advert} }

// SyncForm is one way an operator writes keepalived's IPVS sync daemon: a
// lvs_sync_daemon line in global_defs or, deprecated, a line in the
// vrrp_instance.
type SyncForm struct {
	Name     string
	Global   string // in global_defs
	Instance string // in vrrp_instance VI_1
}

// SyncForms are the forms keepalived 2.2 accepts (keepalived.conf(5):
// lvs_sync_daemon <INTERFACE> [[inst] <VRRP_INSTANCE>] [id <SYNC_ID>]
// [maxlen <LEN>] [port <PORT>] [ttl <TTL>] [group <IP ADDR>]).
var SyncForms = []SyncForm{
	{Name: "interface and instance", Global: "lvs_sync_daemon eth0 VI_1"},
	{Name: "inst keyword and sync id", Global: "lvs_sync_daemon eth0 inst VI_1 id 7"},
	{Name: "every option", Global: "lvs_sync_daemon eth0 VI_1 id 7 maxlen 1400 port 8850 ttl 2 group 224.0.0.82"},
	{Name: "interface only", Global: "lvs_sync_daemon eth0"},
	{Name: "per instance (deprecated)", Instance: "lvs_sync_daemon_interface eth0"},
}

func (k *Keepalived) syncForm() SyncForm {
	if k.Sync == (SyncForm{}) {
		return SyncForms[0]
	}
	return k.Sync
}

// Name implements Implementation: "keepalived", with the sync daemon's
// form unless it is the first.
func (k *Keepalived) Name() string {
	switch f := k.syncForm(); {
	case f != SyncForms[0]:
		return "keepalived (sync: " + f.Name + ")"
	case k.Advert != 0:
		return "keepalived, advert_int " + k.Advert.String()
	}
	return "keepalived"
}

// directors holds the process an implementation runs on each director
// box, and stops them the same way for every implementation.
type directors struct {
	lab   *lab.Lab
	procs map[int]*lab.Process // by director index
}

// firstStart says whether director i starts for the first time in l, not
// again: what a first start installs in the box (a guard rule, a sysctl)
// a restart finds in place. One Implementation may run several labs in
// turn (a spec repeated, REPEAT=N): each lab's first start is its own.
func (d *directors) firstStart(l *lab.Lab, i int) bool {
	if d.lab != l {
		d.lab, d.procs = l, map[int]*lab.Process{}
	}
	return d.procs[i] == nil
}

// started keeps director i's process.
func (d *directors) started(i int, p *lab.Process) {
	if d.procs == nil {
		d.procs = map[int]*lab.Process{}
	}
	d.procs[i] = p
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

// Signal implements Implementation.
func (d *directors) Signal(i int, sig syscall.Signal) error {
	if d.procs[i] == nil {
		return fmt.Errorf("director %d was not started", i)
	}
	return d.procs[i].Signal(sig)
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

// Config renders director i's keepalived.conf, whose other files (the
// REDIRECT fix's notify script) are in dir.
func (k *Keepalived) Config(c Cluster, i int, fix Fix, dir string) (string, error) {
	if err := c.twoDirectors("keepalived with lvslab's config"); err != nil {
		return "", err
	}
	d := c.Directors[i]
	data := map[string]any{
		"Node": d.Node, "State": "BACKUP", "VRID": c.VRID, "Priority": d.Priority,
		"VIP": c.VIP, "Port": c.Port, "Realservers": c.Realservers(), "Mark": 0, "PeerMAC": c.Peer(i).MAC,
		"Advert":   strconv.FormatFloat(cmp.Or(c.Advert, time.Second).Seconds(), 'f', -1, 64),
		"Redirect": fix == FixRedirect, "Dir": dir,
	}
	if fix == FixBackupOnly {
		data["Sync"] = k.syncForm()
	}
	if i == 0 {
		data["State"] = "MASTER"
	}
	if fix == FixFwmark || fix == FixFwmarkOnly {
		data["Mark"] = d.Mark
	}
	var b strings.Builder
	err := keepalivedConf.Execute(&b, data)
	return b.String(), err
}

// Start implements Implementation.
func (k *Keepalived) Start(ctx context.Context, l *lab.Lab, c Cluster, i int, fix Fix) error {
	d := c.Directors[i]
	box := l.Box(d.Node)
	if k.firstStart(l, i) {
		switch fix {
		case FixFwmark, FixFwmarkOnly:
			if err := insertGuard(box, c.guard(i), fix == FixFwmark); err != nil {
				return err
			}
		case FixBackupOnly:
			// net.ipv4.vs.* exists once ip_vs is loaded.
			if err := kernel.LoadIPVS(); err != nil {
				return fmt.Errorf("backup_only needs ip_vs: %w", err)
			}
			if err := box.SetSysctls(map[string]string{"net.ipv4.vs.backup_only": "1"}); err != nil {
				return err
			}
		}
	}
	dir := filepath.Join(l.Dir, d.Node, "keepalived")
	conf, err := k.Config(c, i, fix, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if fix == FixRedirect {
		if err := os.WriteFile(filepath.Join(dir, "redirect.sh"), []byte(redirectScript(c)), 0o755); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := startKeepalived(box, dir, path)
	k.started(i, p)
	return err
}

// startKeepalived runs keepalived in box on config path, its pid files
// in dir, logging to the lab's log of the process.
func startKeepalived(box *lab.Box, dir, path string) (*lab.Process, error) {
	return box.Start("keepalived", keepalivedArgv(dir, path))
}

// keepalivedArgv runs keepalived in the foreground on the config at path,
// its pid files in dir.
func keepalivedArgv(dir, path string) []string {
	return []string{"keepalived", "--dont-fork", "--log-console", "--log-detail",
		"--use-file", path, "--pid", filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(dir, "vrrp.pid"), "--checkers_pid", filepath.Join(dir, "checkers.pid")}
}

// redirectScript is the REDIRECT fix's notify script, as an operator
// writes it: idempotent, since keepalived may call it for BACKUP twice (a
// restart, or BACKUP after FAULT), and a leftover rule on a MASTER would
// take its VIP traffic away from IPVS.
func redirectScript(c Cluster) string {
	return fmt.Sprintf(`#!/bin/sh
# keepalived notify for the REDIRECT fix: add while BACKUP or FAULT, del on
# MASTER and on stop. VIP traffic goes to the local stack before IPVS.
rule="%s"
case "$1" in
add) iptables -t nat -C PREROUTING $rule 2>/dev/null || iptables -t nat -I PREROUTING $rule ;;
del) while iptables -t nat -D PREROUTING $rule 2>/dev/null; do :; done ;;
esac
`, strings.Join(redirectRule(c), " "))
}

// redirectRule is the REDIRECT fix's rule in nat PREROUTING.
func redirectRule(c Cluster) []string {
	return []string{"-d", c.VIP.String() + "/32", "-p", "tcp", "--dport", fmt.Sprint(c.Port), "-j", "REDIRECT"}
}

// redirecting says whether box has the REDIRECT fix's rule.
func redirecting(box *lab.Box, c Cluster) (bool, error) {
	var ok bool
	err := box.Do(func() error {
		ipt, err := iptables.New()
		if err == nil {
			ok, err = ipt.Exists("nat", "PREROUTING", redirectRule(c)...)
		}
		return err
	})
	return ok, err
}

// Mixed runs a different implementation on each director box: keepalived
// on one and the lvslab director on the other, say. They must elect one
// MASTER and fail over both ways.
type Mixed [2]Implementation

// Name implements Implementation: "keepalived+lvslab" is keepalived on the
// first (MASTER) box.
func (m Mixed) Name() string { return m[0].Name() + "+" + m[1].Name() }

// Start implements Implementation.
func (m Mixed) Start(ctx context.Context, l *lab.Lab, c Cluster, i int, fix Fix) error {
	return m[i].Start(ctx, l, c, i, fix)
}

// Stop implements Implementation.
func (m Mixed) Stop(i int, graceful bool) error { return m[i].Stop(i, graceful) }

// Signal implements Implementation.
func (m Mixed) Signal(i int, sig syscall.Signal) error { return m[i].Signal(i, sig) }

// Timings are the slower box's: both advertise at the cluster's
// interval.
func (m Mixed) Timings() Timers {
	var t Timers
	for _, impl := range m {
		if ti, ok := impl.(interface{ Timings() Timers }); ok {
			t.Advert = max(t.Advert, ti.Timings().Advert)
		}
	}
	return t
}

// Logs implements Implementation.
func (m Mixed) Logs() map[string]string {
	logs := m[0].Logs()
	maps.Copy(logs, m[1].Logs())
	return logs
}

// StartBoth starts the directors: the MASTER's first, and the others once
// it holds the VIP, as boxes in the field start seconds apart. Started
// together, both time out as BACKUP at once and both become MASTER for a
// moment, a race of its own (Findings) that each scenario would inherit.
func StartBoth(ctx context.Context, impl Implementation, l *lab.Lab, c Cluster, fix Fix) error {
	if err := impl.Start(ctx, l, c, 0, fix); err != nil {
		return err
	}
	master := l.Box(c.Directors[0].Node)
	if err := waitPair(ctx, impl, c.readyBound(), func() string { return HoldsVIP(master, c) }); err != nil {
		return fmt.Errorf("the first director alone: %w (%s)", err, logTails(impl))
	}
	if c.Single {
		return nil
	}
	for i := 1; i < len(c.Directors); i++ {
		if err := impl.Start(ctx, l, c, i, fix); err != nil {
			return err
		}
	}
	return nil
}

// insertGuard installs the seed's rule as its operator does, straight
// into mangle PREROUTING, and with redirects g's peer REDIRECTs beside it
// (appendRedirects). The rules' text is the director's (one source).
func insertGuard(box *lab.Box, g director.Guard, redirects bool) error {
	return iptablesIn(box, func(ipt *iptables.IPTables) error {
		if err := ipt.Insert("mangle", "PREROUTING", 1, g.Rule()...); err != nil {
			return fmt.Errorf("insert MAC guard in %s: %w", box.Name, err)
		}
		if redirects {
			return appendRedirects(ipt, g)
		}
		return nil
	})
}

// appendRedirects appends g's peer REDIRECTs (Guard.Redirects) to nat
// PREROUTING: what closes the crash hole beside the guard.
func appendRedirects(ipt *iptables.IPTables, g director.Guard) error {
	for _, r := range g.Redirects() {
		if err := ipt.Append("nat", "PREROUTING", r...); err != nil {
			return fmt.Errorf("append peer REDIRECT: %w", err)
		}
	}
	return nil
}

// iptablesIn runs fn with go-iptables in box: it execs iptables, which
// acts in the netns of the calling thread, hence box.Do.
func iptablesIn(box *lab.Box, fn func(*iptables.IPTables) error) error {
	return box.Do(func() error {
		ipt, err := iptables.New()
		if err != nil {
			return fmt.Errorf("iptables in %s: %w (install iptables: make deps)", box.Name, err)
		}
		return fn(ipt)
	})
}
