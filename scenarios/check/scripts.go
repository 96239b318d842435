package check

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/lvslab/lvslab/scenarios"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
)

// scriptKeywords are the keywords, besides the modelled ones (an
// instance's notify_*, vrrp_script's script, MISC_CHECK's misc_path),
// that make keepalived run a command: real servers' notify_up/down, a
// virtual server's quorum_up/down, a sync group's notify_*, the notify
// FIFO scripts, startup and shutdown scripts.
var scriptKeywords = []string{"notify", "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted",
	"notify_master_rx_lower_pri", "notify_up", "notify_down", "quorum_up", "quorum_down", "notify_fifo_script",
	"vrrp_notify_fifo_script", "lvs_notify_fifo_script", "startup_script", "shutdown_script"}

// command is a line of a config that makes keepalived run a command.
type command struct {
	Pos  keepalivedconf.Pos
	Key  string // notify_backup, script (of a vrrp_script), ...
	What string // where it sits and its name, for the mappings
	Cmd  string // the command as written: the script's path, arguments
}

// path is the script the command runs.
func (c command) path() string { return scriptPath(c.Cmd) }

// scriptPath is the script a command line runs: its first word.
func scriptPath(cmd string) string { return strings.Fields(cmd + " x")[0] }

// commands are the lines of c that make keepalived run a command, but
// MISC_CHECK's (a stand-in runs: see labMappings).
func commands(c *keepalivedconf.Config) ([]command, error) {
	var out []command
	for _, in := range c.Instances {
		for _, key := range slices.Sorted(maps.Keys(in.Notify)) {
			out = append(out, command{in.NotifyPos[key], key, key, in.Notify[key]})
		}
	}
	for _, u := range c.Unmodelled {
		if !slices.Contains(scriptKeywords, u.Key) {
			continue
		}
		text, err := lineOf(u.Pos)
		if err != nil {
			return nil, err
		}
		_, cmd, _ := strings.Cut(strings.TrimSpace(text), u.Key)
		out = append(out, command{u.Pos, u.Key, u.Key, strings.Trim(strings.TrimSpace(cmd), `"'`)})
	}
	for _, name := range slices.Sorted(maps.Keys(c.Scripts)) {
		if sc := c.Scripts[name]; sc.CommandPos.Line != 0 {
			out = append(out, command{sc.CommandPos, "script", "vrrp_script " + name, sc.Command})
		}
	}
	return out, nil
}

// ScriptPaths are the scripts c makes keepalived run, each once, sorted:
// every command's (notify_*, vrrp_script, ...) and MISC_CHECK's.
func ScriptPaths(c *keepalivedconf.Config) ([]string, error) {
	cmds, err := commands(c)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cmd := range cmds {
		out = append(out, cmd.path())
	}
	for _, vs := range c.VirtualServers {
		for _, rs := range vs.RealServers {
			for _, ch := range rs.Checks {
				if ch.MiscPath != "" {
					out = append(out, scriptPath(ch.MiscPath))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// handedOver is the script a command runs, from the directory the user
// handed over (--scripts DIR: the directory the configs name, e.g.
// /etc/keepalived, as it is on their boxes): its name there, and its
// text; nil where no DIR was given or it holds no such script.
func (p *Pair) handedOver(c command) (string, []byte, error) {
	if p.Scripts == "" {
		return "", nil, nil
	}
	name := filepath.Base(c.path())
	text, err := keepalivedconf.ReadFile(filepath.Join(p.Scripts, name), keepalivedconf.MaxFileBytes)
	if os.IsNotExist(err) {
		return name, nil, nil
	}
	return name, text, err
}

// commands edits into e what box i's configs run: a script the user
// handed over runs from the box's run directory (into handed), with
// keepalived's arguments; any other is left out (a vrrp_script taken to
// pass). Lines the edits already changed (the prescription left a
// script out) stay as they are.
func (pl *Plan) commands(p *Pair, i int, e Edits, handed map[string][]byte) ([]Mapping, error) {
	cmds, err := commands(p.Configs[i])
	if err != nil {
		return nil, err
	}
	node := pl.Boxes[i].Node
	var out []Mapping
	for _, c := range cmds {
		if e.edited(c.Pos) {
			continue
		}
		text, err := lineOf(c.Pos)
		if err != nil {
			return nil, err
		}
		name, script, err := p.handedOver(c)
		switch {
		case err != nil:
			return nil, err
		case script != nil:
			handed[name] = script
			e.set(c.Pos, strings.Replace(text, c.path(), filepath.Join(scenarios.LabDir, scenarios.ScriptsDir, name), 1))
			out = append(out, Mapping{Box: node, From: c.What + " " + c.Cmd, To: "runs " + filepath.Join(p.Scripts, name),
				Why: c.Pos.String() + ": handed over with --scripts: it runs in the box, from the box's run directory, with keepalived's arguments, / read-only"})
		case c.Key == "script":
			e.set(c.Pos, indentOf(text)+`script "true"`)
			out = append(out, Mapping{Box: node, From: c.What + ": " + c.Cmd, To: "true", Assumed: true,
				Why: c.Pos.String() + ": the lab runs no script a config names" + notGiven(p, name) + "; the check is taken to pass"})
		default:
			if err := e.comment(c.Pos); err != nil {
				return nil, err
			}
			out = append(out, Mapping{Box: node, From: c.What + " " + c.Cmd, To: "not run", Assumed: true,
				Why: c.Pos.String() + ": the lab runs no script a config names" + notGiven(p, name) + ": what it does (a REDIRECT that keeps a BACKUP from re-balancing, say) is not in these verdicts"})
		}
	}
	return out, nil
}

// notGiven says a script was not handed over, where a DIR was given.
func notGiven(p *Pair, name string) string {
	if p.Scripts == "" {
		return " (--scripts DIR hands yours over)"
	}
	return fmt.Sprintf(" (no %s in %s)", name, p.Scripts)
}

// ownFix matches a script that makes a loop fix of its own: a REDIRECT
// of VIP traffic to the box itself, or an IPVS table cleared while
// BACKUP.
var ownFix = regexp.MustCompile(`-j\s+REDIRECT|ipvsadm\s+(-C|--clear)\b`)

// scriptFixes leaves out, in the prescription, the lines of box i's
// configs that run a handed-over script making a loop fix of its own:
// the guard replaces it, and the proof runs the prescription as written.
func (rx *Prescription) scriptFixes(p *Pair, i int, node string, e Edits) error {
	cmds, err := commands(p.Configs[i])
	if err != nil {
		return err
	}
	for _, c := range cmds {
		_, script, err := p.handedOver(c)
		if err != nil {
			return err
		}
		if script == nil || !ownFix.Match(script) {
			continue
		}
		if err := e.comment(c.Pos); err != nil {
			return err
		}
		rx.Notes = append(rx.Notes, fmt.Sprintf("on %s: %s: %s %s makes a fix of its own (%s); the guard replaces it, so the fix removes the line (undo what it did where it ran)",
			node, c.Pos, c.What, c.Cmd, ownFix.Find(script)))
	}
	return nil
}
