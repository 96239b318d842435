package director

import "sync"

// worker runs the daemon's slow work one job at a time, in order, off the
// VRRP loop: iptables execs for the guard, the sync daemon switch, IPVS
// reconciles after health changes. The loop only queues a job (never
// blocks), so adverts keep their interval and the state machine hears its
// peer while a job stalls. keepalived keeps its VRRP and checker processes
// apart for the same reason.
type worker struct {
	mu     sync.Mutex
	jobs   []func()
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

// newWorker starts a worker in a goroutine from spawn (the daemon's, which
// turns a panic into a clean stop).
func newWorker(spawn func(func())) *worker {
	w := &worker{wake: make(chan struct{}, 1), done: make(chan struct{})}
	spawn(w.run)
	return w
}

// do queues job and reports whether it did: after close it does nothing.
func (w *worker) do(job func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.jobs = append(w.jobs, job)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

func (w *worker) run() {
	defer close(w.done)
	for range w.wake {
		for {
			w.mu.Lock()
			jobs := w.jobs
			w.jobs = nil
			w.mu.Unlock()
			if len(jobs) == 0 {
				break
			}
			for _, job := range jobs {
				job()
			}
		}
	}
}

// flush waits until every job queued before it has run.
func (w *worker) flush() {
	ran := make(chan struct{})
	if w.do(func() { close(ran) }) {
		<-ran
	}
}

// close runs the jobs queued so far, then stops the worker.
func (w *worker) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	close(w.wake)
	w.mu.Unlock()
	<-w.done
}
