package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/lvslab/lvslab/scenarios/check"
)

// writeFixed writes lvslab check --write-fixed: DIR/dN/ holds box N's
// fixed config files, at their paths relative to its main config, and
// iptables.rules. DIR must be new or empty and not a system directory
// (unless force); only the boxes' own files are written (none included
// from outside a config's directory), each with its original's mode,
// never through a symlink nor over a file.
func writeFixed(dir string, force bool, p *check.Pair, pl *check.Plan, rx *check.Prescription) error {
	if err := fixedDir(dir, force); err != nil {
		return err
	}
	for i, b := range rx.Boxes {
		out := filepath.Join(dir, pl.Boxes[i].Node)
		base := filepath.Dir(p.Paths[i])
		c := p.Configs[i]
		for _, f := range c.Files {
			if slices.Contains(c.Outside, f) {
				if len(b.Edits[f]) > 0 {
					return fmt.Errorf("--write-fixed: the fix edits %s, which %s includes from outside its directory: lvslab writes only a box's own files; make the edits shown by hand", f, p.Paths[i])
				}
				continue
			}
			rel, err := filepath.Rel(base, f)
			if err != nil {
				return err
			}
			if err := writeNew(filepath.Join(out, rel), []byte(b.Files[f]), f, force); err != nil {
				return err
			}
		}
		rules := ""
		if p.Rules[i] != nil {
			rules = p.Rules[i].Path
		}
		if err := writeNew(filepath.Join(out, "iptables.rules"), []byte(b.Restore), rules, force); err != nil {
			return err
		}
	}
	return nil
}

// fixedDir refuses a DIR that holds anything, or is a system directory
// (/ or one directly under it), unless force.
func fixedDir(dir string, force bool) error {
	if force {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if filepath.Dir(abs) == "/" || abs == "/" {
		return usageError("--write-fixed %s: a system directory; give a new directory (or --force)", dir)
	}
	ents, err := os.ReadDir(abs)
	switch {
	case err == nil && len(ents) > 0:
		return usageError("--write-fixed %s: not empty; give a new or empty directory (or --force)", dir)
	case err != nil && !os.IsNotExist(err):
		return usageError("--write-fixed %s: %v", dir, err)
	}
	return nil
}

// writeNew creates path (and its directories) with data and the mode of
// the file modeOf (0644 if ""), refusing a symlink, and a file already
// there unless replace.
func writeNew(path string, data []byte, modeOf string, replace bool) error {
	mode := fs.FileMode(0o644)
	if modeOf != "" {
		st, err := os.Stat(modeOf)
		if err != nil {
			return err
		}
		mode = st.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | syscall.O_NOFOLLOW | os.O_EXCL
	if replace {
		flags = flags&^os.O_EXCL | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return fmt.Errorf("--write-fixed: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
