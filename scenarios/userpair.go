package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/lvslab/lvslab/lab"
)

// UserKeepalived runs keepalived with a user's own pair of configs, as
// lvslab check prepared them: unchanged but for the mappings it lists.
type UserKeepalived struct {
	directors
	// Files returns the config files of the box node names (path relative
	// to the run directory -> text) and the one keepalived reads, with the
	// VRRP priority set to priority, or as configured when 0.
	Files func(node string, priority int) (files map[string]string, main string, err error)
	// Rules are iptables-restore input for each box (node name -> text),
	// applied once before its first start ("" for none).
	Rules map[string]string
	// Tables are how many realservers each box's virtual services list
	// in all (node name -> count): its IPVS table once every checker
	// passed. Each box lists its own; they may differ.
	Tables map[string]int
	// Serves are how many realservers each box's virtual service for a
	// VIP:port lists (node name -> VIP:port -> count).
	Serves map[string]map[netip.AddrPort]int
	// Timers are what the configs set that the waits follow.
	Timers Timers
	// first is the cluster priority each box first started with: the
	// configs decide it. A restart with another (a switchover raising the
	// BACKUP's) writes that one into the config.
	first [2]int
}

// Name implements Implementation.
func (u *UserKeepalived) Name() string { return "keepalived" }

// Timings are the pair's timers.
func (u *UserKeepalived) Timings() Timers { return u.Timers }

// TableSize implements tableSizer.
func (u *UserKeepalived) TableSize(node string) int { return u.Tables[node] }

// Serving implements tableSizer.
func (u *UserKeepalived) Serving(node string, svc netip.AddrPort) int { return u.Serves[node][svc] }

// Start implements Implementation.
func (u *UserKeepalived) Start(ctx context.Context, l *lab.Lab, c Cluster, i int, _ Fix) error {
	d := c.Directors[i]
	box := l.Box(d.Node)
	if u.firstStart(l, i) && u.Rules[d.Node] != "" {
		err := box.Do(func() error {
			cmd := exec.Command("iptables-restore", "--noflush")
			cmd.Stdin = bytes.NewReader([]byte(u.Rules[d.Node]))
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("iptables-restore on %s: %v: %s", d.Node, err, bytes.TrimSpace(out))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	priority := 0
	if u.first[i] == 0 {
		u.first[i] = d.Priority
	} else if d.Priority != u.first[i] {
		priority = d.Priority
	}
	files, main, err := u.Files(d.Node, priority)
	if err != nil {
		return err
	}
	dir := filepath.Join(l.Dir, d.Node, "keepalived")
	for rel, text := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return err
		}
	}
	u.procs[i], err = startKeepalived(box, dir, filepath.Join(dir, main))
	return err
}
