package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Admission bounds how many labs build their namespaces, and how many
// servers start, at once on this kernel, across every process: six Ginkgo
// processes on two TCG cores that all start their MariaDB servers
// together starve each other past any fixed deadline. It is a counting
// lock of slot files, each held by flock: a crashed holder's slot frees
// itself. Waiting has no bound of its own; the caller's context has.
type Admission string

// The two admissions, each with as many slots as CPUs.
const (
	AdmitLab    Admission = "lab"    // building a lab's namespaces and links
	AdmitServer Admission = "server" // a server, from its start until it answers
)

// AdmitDir holds the slot files: one per kernel, since each kernel has its
// own CPUs (the micro-VM's /run is its own).
var AdmitDir = filepath.Join(DefaultRunDir, ".admit")

// Slot is a held admission; Release gives it back.
type Slot struct{ f *os.File }

// Release frees the slot. A nil slot is a no-op.
func (s *Slot) Release() {
	if s != nil && s.f != nil {
		s.f.Close() // closing the descriptor drops its flock
	}
}

// Admit waits for a free slot of kind and returns it with how long it
// waited.
func Admit(ctx context.Context, kind Admission) (*Slot, time.Duration, error) {
	if err := os.MkdirAll(AdmitDir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("admission %s: %w", kind, err)
	}
	n := runtime.NumCPU()
	t0 := time.Now()
	for {
		// Start at a random slot so that waiters do not all poll slot 0.
		first := rand.IntN(n)
		for i := range n {
			f, err := TryLock(filepath.Join(AdmitDir, fmt.Sprintf("%s.%d", kind, (first+i)%n)))
			if err != nil {
				return nil, 0, fmt.Errorf("admission %s: %w", kind, err)
			}
			if f != nil {
				return &Slot{f}, time.Since(t0), nil
			}
		}
		if err := pause(ctx); err != nil {
			return nil, time.Since(t0), fmt.Errorf("admission %s: waited %s: %w", kind, time.Since(t0).Round(time.Millisecond), err)
		}
	}
}

// LockFile waits until it holds the flock of path (created if missing).
func LockFile(ctx context.Context, path string) (*os.File, error) {
	for {
		f, err := TryLock(path)
		if err != nil || f != nil {
			return f, err
		}
		if err := pause(ctx); err != nil {
			return nil, fmt.Errorf("wait for %s: %w", path, err)
		}
	}
}

// TryLock opens path and takes its flock without waiting: nil, nil when
// another descriptor holds it.
func TryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return f, nil
	}
	f.Close()
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, nil
	}
	return nil, fmt.Errorf("lock %s: %w", path, err)
}

// pause waits one polling interval, or returns ctx's error.
func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(100 * time.Millisecond):
		return nil
	}
}
