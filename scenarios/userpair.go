package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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
	first map[int]int
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
	if u.first == nil {
		u.first = map[int]int{}
	}
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
	scripts := false
	for rel, text := range files {
		p, mode := filepath.Join(dir, rel), os.FileMode(0o644)
		if strings.HasPrefix(rel, ScriptsDir+"/") {
			scripts, mode = true, 0o755
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, LabDir, dir)), mode); err != nil {
			return err
		}
	}
	argv := keepalivedArgv(dir, filepath.Join(dir, main))
	if scripts {
		// The user's scripts run as root: where / is read-only to them
		// (a mount namespace of keepalived's own), so that nothing they
		// do outside the lab's run directory (/run) lasts.
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`mount -o remount,bind,ro / && exec "$@"`, "keepalived"}, argv...)
	}
	p, err := box.Start("keepalived", argv)
	u.started(i, p)
	return err
}

// LabDir stands in a user's config, as the lab runs it, for the box's
// run directory; ScriptsDir is where in it the scripts the user handed
// over go.
const (
	LabDir     = "@LVSLAB_BOX_DIR@"
	ScriptsDir = "scripts"
)
