package scenarios

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lvslab/lvslab/lab"
	"github.com/prometheus/procfs"
)

// Conn is what one client connection to the VIP saw.
type Conn struct {
	// ServedBy is the @@server_id that answered; 0 when none did.
	ServedBy int           `json:"served_by"`
	Start    time.Time     `json:"start"`
	Latency  time.Duration `json:"latency_ns"`
	// Hung: no answer before the timeout (the loop's symptom).
	Hung bool `json:"hung"`
	// Cause names a failure's kind (failureCause): what UNSERVED reports.
	Cause string `json:"cause,omitempty"`
	Error string `json:"error,omitempty"`
}

// Workload is the connections Reads opens: N fresh ones to Addr, at
// most Parallel at once, or, when Every is set, one every that long
// whatever the others do (an open loop: the paced load), which go on past
// N until Until closes, when it is not nil. Each is bounded by Dial (the
// TCP connect) and Timeout (each read and write). They take turns among
// the source addresses From (the box's default when empty): IPVS
// persistence and source hashing decide per client address, so one
// address would see one backend. Kind is the backend they speak to:
// BackendMySQL ("" too) or a built-in one.
type Workload struct {
	From          []netip.Addr
	Kind, Addr    string
	N, Parallel   int
	Every         time.Duration
	Until         <-chan struct{}
	Dial, Timeout time.Duration
	// PortBase, when set, binds connection i (MySQL only) to client port
	// PortBase+i, reusing it if the client's TIME_WAIT still holds it (a
	// busy client with tcp_tw_reuse): CrashReuse's reads.
	PortBase uint16
}

// Reads opens w's connections from the client box, each asking which
// backend serves it: SELECT @@server_id over MySQL, or the built-in
// backend's answer.
func Reads(ctx context.Context, client *lab.Box, w Workload) ([]Conn, error) {
	query, done, err := w.query(client)
	if err != nil {
		return nil, err
	}
	defer done()
	var sem chan struct{} // paced: not bounded
	if w.Every == 0 {
		sem, w.Until = make(chan struct{}, w.Parallel), nil
	}
	more := func(i int) bool {
		if i < w.N || w.Until == nil {
			return i < w.N
		}
		select {
		case <-w.Until:
			return false
		default:
			return true
		}
	}
	var out []*Conn
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; more(i); i++ {
		if w.Every > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * w.Every)))
		} else {
			sem <- struct{}{}
		}
		c := &Conn{}
		out = append(out, c)
		wg.Go(func() {
			if sem != nil {
				defer func() { <-sem }()
			}
			qctx, cancel := context.WithTimeout(ctx, w.Dial+w.Timeout)
			defer cancel()
			c.Start = time.Now()
			id, err := query(qctx, i)
			c.ServedBy, c.Latency = id, time.Since(c.Start)
			if err != nil {
				c.Hung, c.Cause, c.Error = isTimeout(err), failureCause(err), err.Error()
			}
		})
	}
	wg.Wait()
	conns := make([]Conn, len(out))
	for i, c := range out {
		conns[i] = *c
	}
	return conns, nil
}

// query is how w asks which backend serves connection i: a built-in
// backend's answer, or SELECT @@server_id over MySQL, each query on a new
// TCP connection (from a pool per source address, or on its own from a
// fixed port). done closes the pools.
func (w Workload) query(client *lab.Box) (query func(ctx context.Context, i int) (int, error), done func(), err error) {
	src := func(i int) netip.Addr {
		if len(w.From) == 0 {
			return netip.Addr{}
		}
		return w.From[i%len(w.From)]
	}
	switch {
	case w.Kind != BackendMySQL && w.Kind != "" && w.PortBase != 0:
		return nil, nil, fmt.Errorf("fixed client ports (PortBase) over MySQL only, not %s", w.Kind)
	case w.Kind != BackendMySQL && w.Kind != "":
		return func(ctx context.Context, i int) (int, error) {
			return ask(ctx, client.DialFrom(src(i)), w.Kind, w.Addr, w.Dial, w.Timeout)
		}, func() {}, nil
	case w.PortBase != 0:
		return func(ctx context.Context, i int) (int, error) {
			return askFrom(ctx, client, netip.AddrPortFrom(src(i), w.PortBase+uint16(i)), w)
		}, func() {}, nil
	}
	pools := make([]*sql.DB, max(1, len(w.From)))
	done = func() {
		for _, p := range pools {
			if p != nil {
				p.Close()
			}
		}
	}
	for i := range pools {
		cfg := client.MySQLConfig(w.Addr, w.Timeout)
		cfg.Timeout, cfg.DialFunc = w.Dial, client.DialFrom(src(i))
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			done()
			return nil, nil, fmt.Errorf("the MySQL client's config for %s: %w", w.Addr, err)
		}
		pools[i] = sql.OpenDB(conn)
		pools[i].SetMaxIdleConns(0) // every query on a new TCP connection
	}
	return func(ctx context.Context, i int) (id int, err error) {
		err = pools[i%len(pools)].QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
		return id, err
	}, done, nil
}

// askFrom asks w.Addr's MySQL server for its @@server_id over one
// connection from the client's address and port src.
func askFrom(ctx context.Context, client *lab.Box, src netip.AddrPort, w Workload) (int, error) {
	cfg := client.MySQLConfig(w.Addr, w.Timeout)
	cfg.Timeout, cfg.DialFunc = w.Dial, client.DialFromPort(src)
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return 0, fmt.Errorf("the MySQL client's config for %s: %w", w.Addr, err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var id int
	err = db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
	return id, err
}

// failureCause names the kind of a connection's failure: a handshake
// (TCP connect) or an answer that timed out, refused, reset, closed by
// the server end, or unreachable (an ICMP error: with the loop, time
// exceeded).
func failureCause(err error) string {
	var op *net.OpError
	switch {
	case isTimeout(err) && errors.As(err, &op) && op.Op == "dial":
		return "handshake timeout"
	case isTimeout(err):
		return "answer timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, mysql.ErrInvalidConn):
		return "closed"
	}
	return "other error"
}

// refused: the server end refused or closed the connection (a reset, or
// closed before the answer), as a stopped or stopping server does; a loop
// drops segments instead, or answers with ICMP (no route to host).
func (c Conn) refused() bool {
	return c.Cause == "refused" || c.Cause == "reset" || c.Cause == "closed"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// Write is one insert through the VIP.
type Write struct {
	ID    int64  `json:"id"`
	Acked bool   `json:"acked"`
	Error string `json:"error,omitempty"`
}

// WriteStats sums the write workload: every acknowledged insert must be
// readable afterwards from some backend.
type WriteStats struct {
	Attempted int     `json:"attempted"`
	Acked     int     `json:"acked"`
	Lost      int     `json:"lost"`
	LostIDs   []int64 `json:"lost_ids,omitempty"`
}

// WriteLoad is a write workload: ids Base, Base+1, ... inserted through
// Addr, one every Every, each bounded by Timeout.
type WriteLoad struct {
	Addr           string
	Base           int64
	Every, Timeout time.Duration
}

// Writes inserts w's ids into lab.writes from the client box, one fresh
// connection per insert, until stop is closed.
func Writes(ctx context.Context, client *lab.Box, w WriteLoad, stop <-chan struct{}) []Write {
	addr, base, interval, timeout := w.Addr, w.Base, w.Every, w.Timeout
	db := client.OpenMySQL(addr, timeout)
	defer db.Close()
	db.SetMaxIdleConns(0)
	var out []Write
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for id := base; ; id++ {
		qctx, cancel := context.WithTimeout(ctx, 2*timeout)
		_, err := db.ExecContext(qctx, "INSERT INTO lab.writes (id) VALUES (?)", id)
		cancel()
		w := Write{ID: id, Acked: err == nil}
		if err != nil {
			w.Error = err.Error()
		}
		out = append(out, w)
		select {
		case <-stop:
			return out
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}

// CheckWrites reads the ids of writes back from every backend (host:port)
// directly, and counts the acknowledged ones none of them has.
func CheckWrites(ctx context.Context, client *lab.Box, backends []string, writes []Write, timeout time.Duration) (WriteStats, error) {
	st := WriteStats{Attempted: len(writes)}
	if len(writes) == 0 {
		return st, nil
	}
	have := map[int64]bool{}
	for _, b := range backends {
		db := client.OpenMySQL(b, timeout)
		rows, err := db.QueryContext(ctx, "SELECT id FROM lab.writes WHERE id BETWEEN ? AND ?", writes[0].ID, writes[len(writes)-1].ID)
		if err != nil {
			db.Close()
			return st, fmt.Errorf("read writes back from %s: %w", b, err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err == nil {
				have[id] = true
			}
		}
		err = rows.Err()
		rows.Close()
		db.Close()
		if err != nil {
			return st, fmt.Errorf("read writes back from %s: %w", b, err)
		}
	}
	for _, w := range writes {
		if w.Acked {
			st.Acked++
			if !have[w.ID] {
				st.Lost++
				st.LostIDs = append(st.LostIDs, w.ID)
			}
		}
	}
	return st, nil
}

// Percentiles of the served connections' latencies.
type Percentiles struct {
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// latencies are the percentiles of the connections some backend served
// (nearest rank); the zero value when none was.
func latencies(conns []Conn) Percentiles {
	var d []time.Duration
	for _, c := range conns {
		if c.ServedBy > 0 {
			d = append(d, c.Latency)
		}
	}
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	rank := func(p float64) time.Duration { return d[int(math.Ceil(p*float64(len(d))))-1] }
	return Percentiles{P50: rank(0.50), P99: rank(0.99), Max: d[len(d)-1]}
}

// softirq is the time every CPU of this machine has spent in softirqs
// since boot, in ms: /proc/stat's softirq column, as prometheus/procfs
// reads it (in seconds, from USER_HZ ticks).
func softirq() (uint64, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, err
	}
	st, err := fs.Stat()
	if err != nil {
		return 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return uint64(math.Round(st.CPUTotal.SoftIRQ * 1000)), nil
}
