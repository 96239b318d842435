package lab

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// StallWatch bounds a wait by progress, not by the clock: it fails the
// wait once progress() has not changed for stall, or, whatever it does,
// after ceiling. On a loaded machine a healthy start is slow but moves;
// a hung one does not.
type StallWatch struct {
	stall, ceiling time.Duration
	progress       func() uint64
	t0, movedAt    time.Time
	last           uint64
}

// NewStallWatch starts a watch; progress is any counter that moves while
// the awaited thing works (a log's size, CPU time).
func NewStallWatch(stall, ceiling time.Duration, progress func() uint64) *StallWatch {
	now := time.Now()
	return &StallWatch{stall: stall, ceiling: ceiling, progress: progress, t0: now, movedAt: now, last: progress()}
}

// Stalled samples progress and says why the wait should end ("" to go
// on).
func (w *StallWatch) Stalled() string {
	now := time.Now()
	if p := w.progress(); p != w.last {
		w.last, w.movedAt = p, now
	}
	switch {
	case now.Sub(w.movedAt) >= w.stall:
		return fmt.Sprintf("no progress for %s (after %s)", w.stall, now.Sub(w.t0).Round(time.Millisecond))
	case now.Sub(w.t0) >= w.ceiling:
		return fmt.Sprintf("still not done after %s, though progressing", w.ceiling)
	}
	return ""
}

// procCPU is a process's CPU time (user and system) in clock ticks, 0 if
// it cannot be read.
func procCPU(pid int) uint64 {
	f, err := statFields(pid)
	if err != nil {
		return 0
	}
	// Fields 14 and 15 of /proc/PID/stat: utime and stime.
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// procState describes a process for a stall report: its state letter,
// CPU ticks and where it waits in the kernel.
func procState(pid int) string {
	f, err := statFields(pid)
	if err != nil {
		return fmt.Sprintf("pid %d: %v", pid, err)
	}
	wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	return fmt.Sprintf("pid %d state %s, %d CPU ticks, waiting in %q", pid, f[0], procCPU(pid), strings.TrimSpace(string(wchan)))
}

// statFields are the fields of /proc/PID/stat from the third (state)
// on: the command name (field 2) may hold spaces and parentheses, so
// counting starts after its last ')'.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	if i < 0 || len(fields) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return fields, nil
}
