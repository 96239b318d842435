// Package runenv is what every part of lvslab shares about where it runs:
// the cache directory, the environment the kernel runner sets for a
// command in a micro-VM, and log tails for one-line errors. It imports
// nothing of lvslab, so the kernel runner and the lab both build on it.
package runenv

import (
	"os"
	"path/filepath"
	"strings"
)

// InVM is set to "1" in the environment of commands that the kernel
// runner runs in a micro-VM.
const InVM = "LVSLAB_IN_VM"

// Host names the machine a run is on, for reports: the kernel runner
// sets it for its micro-VMs, whose hostname is lvslab-vm.
const Host = "LVSLAB_HOST"

// InMicroVM reports whether this process runs in the kernel runner's
// micro-VM.
func InMicroVM() bool { return os.Getenv(InVM) != "" }

// HostName is the machine a run is on: $LVSLAB_HOST (in a micro-VM, the
// host's name), else this machine's hostname.
func HostName() string {
	if h := os.Getenv(Host); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

// CacheDir is where lvslab keeps what outlives a lab (kernels for the
// micro-VM, MariaDB templates): $LVSLAB_CACHE, else $XDG_CACHE_HOME/lvslab,
// else ~/.cache/lvslab.
func CacheDir() string {
	if d := os.Getenv("LVSLAB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "lvslab")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "lvslab")
}

// LogTail is the last n lines of a log file on one line, for errors.
func LogTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return Tail(string(data), n)
}

// Tail is the last n lines of s joined with " | ", or "(empty)".
func Tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(empty)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
