package check

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// KeepalivedSays runs keepalived's own config test (keepalived -t) on
// each box's files as the lab runs them (yours: the mappings only), and
// returns what it warns of per box, with the user's paths: misspelt and
// unknown keywords it ignores, values it replaces with a default (an
// lb_algo it does not know becomes wlc). The lab's keepalived does the
// same with them, so the verdicts are of what keepalived makes of the
// configs. What only the machine running check lacks (the configs'
// interfaces) is left out. nil when keepalived is not installed.
func KeepalivedSays(p *Pair, pl *Plan, yours func() scenarios.Implementation) ([][]string, error) {
	out := make([][]string, len(pl.Boxes))
	if _, err := exec.LookPath("keepalived"); err != nil {
		return out, nil
	}
	u := yours().(*scenarios.UserKeepalived)
	for i, b := range pl.Boxes {
		files, main, err := u.Files(b.Node, 0)
		if err != nil {
			return out, err
		}
		dir, err := os.MkdirTemp("", "lvslab-keepalived-t-")
		if err != nil {
			return out, err
		}
		defer os.RemoveAll(dir)
		for rel, text := range files {
			path := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return out, err
			}
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				return out, err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		said, _ := exec.CommandContext(ctx, "keepalived", "-t", "-l", "-f", filepath.Join(dir, main)).CombinedOutput() // its exit says only that it warned
		cancel()
		// Its messages name the lab's copies: name the user's files.
		names := map[string]string{}
		for _, f := range p.Configs[i].Files {
			names[filepath.Join(dir, labPath(p.Paths[i], f))] = f
		}
		for _, l := range strings.Split(strings.TrimSpace(string(said)), "\n") {
			if l = strings.TrimSpace(l); l == "" || hostOnly.MatchString(l) {
				continue
			}
			l = strings.Replace(l, "(Line ", "("+p.Paths[i]+": Line ", 1)
			for lab, user := range names {
				l = strings.ReplaceAll(l, lab, user)
			}
			for _, f := range p.Configs[i].Outside {
				if strings.Contains(l, f) {
					l = f + ": a warning (not shown: outside the config's directory)"
				}
			}
			out[i] = append(out[i], keepalivedconf.Clean(l))
		}
	}
	return out, nil
}

// hostOnly matches what keepalived -t says of the machine it runs on,
// not of the config: interfaces this machine does not have (the lab's
// boxes do), and scripts (the lab runs none a config names).
var hostOnly = regexp.MustCompile(`doesn't exist|Non-existent interface|Unknown interface|script_security|SECURITY VIOLATION|[Ss]cript .* (not|cannot)`)
