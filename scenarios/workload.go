package scenarios

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// Conn is what one client connection to the VIP saw.
type Conn struct {
	// ServedBy is the @@server_id that answered; 0 when none did.
	ServedBy int           `json:"served_by"`
	Latency  time.Duration `json:"latency_ns"`
	// Hung: no answer before the timeout (the loop's symptom).
	Hung  bool   `json:"hung"`
	Error string `json:"error,omitempty"`
}

// Reads opens n fresh MySQL connections to addr from the client box, at
// most parallel at once, each bounded by timeout, and asks each which
// backend serves it.
func Reads(ctx context.Context, client *lab.Box, addr string, n, parallel int, timeout time.Duration) []Conn {
	db := client.OpenMySQL(addr, timeout)
	defer db.Close()
	db.SetMaxIdleConns(0) // every query on a new TCP connection
	out := make([]Conn, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range out {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			qctx, cancel := context.WithTimeout(ctx, 2*timeout)
			defer cancel()
			t0 := time.Now()
			err := db.QueryRowContext(qctx, "SELECT @@server_id").Scan(&out[i].ServedBy)
			out[i].Latency = time.Since(t0)
			if err != nil {
				out[i].Hung = isTimeout(err)
				out[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return out
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}
