package lab

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// As many slots as CPUs; the next waits until one is released, and gives
// up when its context ends. Slots are flocks, so the same holds between
// processes.
func TestAdmit(t *testing.T) {
	AdmitDir = t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var held []*Slot
		for range runtime.NumCPU() {
			s, waited, err := Admit(ctx, AdmitServer)
			if err != nil || waited != 0 {
				t.Fatalf("slot %d of %d: waited %s, %v", len(held)+1, runtime.NumCPU(), waited, err)
			}
			held = append(held, s)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if s, _, err := Admit(short, AdmitServer); !errors.Is(err, context.DeadlineExceeded) {
			s.Release()
			t.Fatalf("slot past the CPUs: got %v, want the context's deadline", err)
		}
		if s, _, err := Admit(ctx, AdmitLab); err != nil {
			t.Fatalf("another admission's slot: %v", err)
		} else {
			s.Release()
		}
		got := make(chan time.Duration)
		go func() {
			s, waited, err := Admit(ctx, AdmitServer)
			if err != nil {
				t.Error(err)
			}
			s.Release()
			got <- waited
		}()
		time.Sleep(time.Second)
		held[0].Release()
		// admitted at the first poll after the release (every 100 ms)
		if waited := <-got; waited < time.Second || waited > 1100*time.Millisecond {
			t.Errorf("admitted after %s; want within a poll of the release at 1s", waited)
		}
		for _, s := range held[1:] {
			s.Release()
		}
	})
}

func TestStallWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p uint64
		w := NewStallWatch(30*time.Second, 10*time.Minute, func() uint64 { return p })
		// moving every 20 s: never stalled, until the ceiling
		for range 29 {
			time.Sleep(20 * time.Second)
			p++
			if why := w.Stalled(); why != "" {
				t.Fatalf("progressing, yet: %s", why)
			}
		}
		time.Sleep(20 * time.Second)
		p++
		if why := w.Stalled(); why != "still not done after 10m0s, though progressing" {
			t.Errorf("past the ceiling: got %q", why)
		}
		w = NewStallWatch(30*time.Second, 10*time.Minute, func() uint64 { return p })
		time.Sleep(29 * time.Second)
		if why := w.Stalled(); why != "" {
			t.Errorf("still within the stall bound: %s", why)
		}
		time.Sleep(time.Second)
		if why := w.Stalled(); why != "no progress for 30s (after 30s)" {
			t.Errorf("no progress for 30 s: got %q", why)
		}
	})
}

func TestProcCPU(t *testing.T) {
	// spin until this process has used 200 ms of CPU (20 ticks at 100 Hz)
	var x uint64
	for t0 := time.Now(); time.Since(t0) < 200*time.Millisecond; x++ {
	}
	if got := procCPU(os.Getpid()); got == 0 {
		t.Errorf("no CPU time read for this process after spinning (%d rounds)", x)
	}
	if got := procCPU(-1); got != 0 {
		t.Errorf("ProcCPU(-1) = %d, want 0", got)
	}
}
