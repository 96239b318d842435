package director

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Health is a realserver's health with rise/fall hysteresis: it turns
// down after Fall failed checks in a row and up after Rise good ones. A
// realserver starts up, as keepalived's do, so a fresh director balances
// at once.
type Health struct {
	Rise, Fall int
	down       bool
	streak     int // consecutive results against the current state
}

// Up reports the current state.
func (h *Health) Up() bool { return !h.down }

// Observe records one check result and reports whether the state changed.
func (h *Health) Observe(ok bool) bool {
	if ok != h.down { // agrees with the current state
		h.streak = 0
		return false
	}
	h.streak++
	need := h.Fall
	if h.down {
		need = h.Rise
	}
	if h.streak < need {
		return false
	}
	h.down, h.streak = !h.down, 0
	return true
}

// Probe checks a realserver once.
type Probe func(ctx context.Context) error

// NewProbe returns the check cfg asks for against addr:port. Checks exec
// nothing: TCP connect, or a MySQL ping through go-sql-driver.
func NewProbe(cfg CheckConfig, addr netip.Addr, port int) (Probe, error) {
	target := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	switch cfg.Type {
	case "tcp":
		return func(ctx context.Context) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
			if err == nil {
				c.Close()
			}
			return err
		}, nil
	case "mysql-ping", "mysql-replica":
		mc := mysql.NewConfig()
		mc.User, mc.Passwd, mc.Net, mc.Addr = cfg.User, cfg.Password, "tcp", target
		mc.Timeout, mc.ReadTimeout, mc.Logger = cfg.Timeout, cfg.Timeout, &mysql.NopLogger{}
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, err
		}
		db := sql.OpenDB(conn)
		db.SetMaxIdleConns(0) // a fresh connection each time: what clients get
		if cfg.Type == "mysql-ping" {
			return db.PingContext, nil
		}
		return func(ctx context.Context) error {
			row, err := replicaStatus(ctx, db)
			if err != nil {
				return err
			}
			return replicaHealthy(row, cfg.MaxLag)
		}, nil
	}
	return nil, fmt.Errorf("unknown check %q", cfg.Type)
}

// replicaStatus reads the first row of SHOW REPLICA STATUS (MariaDB 10.5+,
// MySQL 8.0.22+), or SHOW SLAVE STATUS on older servers, as column → value.
// A server that is no replica returns no row: an empty map.
func replicaStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW REPLICA STATUS")
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1064 { // ER_PARSE_ERROR: older syntax only
		rows, err = db.QueryContext(ctx, "SHOW SLAVE STATUS")
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	status := map[string]string{}
	if rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, c := range cols {
			if vals[i].Valid {
				status[c] = vals[i].String
			}
		}
	}
	return status, rows.Err()
}

// replicaHealthy judges a replica status row as the seed's check_slave.pl
// does: both replication threads running and the lag at most maxLag. It
// reads MariaDB's and old MySQL's column names (Slave_*, *_Master) and
// MySQL 8's (Replica_*, *_Source).
func replicaHealthy(status map[string]string, maxLag time.Duration) error {
	if len(status) == 0 {
		return errors.New("not a replica (SHOW REPLICA STATUS is empty)")
	}
	get := func(names ...string) (string, bool) {
		for _, n := range names {
			if v, ok := status[n]; ok {
				return v, true
			}
		}
		return "", false
	}
	for _, th := range []struct{ name, mariadb, mysql8 string }{
		{"IO", "Slave_IO_Running", "Replica_IO_Running"},
		{"SQL", "Slave_SQL_Running", "Replica_SQL_Running"},
	} {
		if v, _ := get(th.mariadb, th.mysql8); v != "Yes" {
			return fmt.Errorf("replication %s thread is not running (%s)", th.name, cmp.Or(v, "NULL"))
		}
	}
	v, ok := get("Seconds_Behind_Master", "Seconds_Behind_Source")
	if !ok {
		return errors.New("replica lag unknown (Seconds_Behind_Master is NULL)")
	}
	lag, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("replica lag %q: %w", v, err)
	}
	if d := time.Duration(lag) * time.Second; d > maxLag {
		return fmt.Errorf("replica lag %s exceeds max_lag %s", d, maxLag)
	}
	return nil
}

// checkResult is one probe's outcome for realserver index rs of service svc.
type checkResult struct {
	svc, rs int
	err     error
}

// runChecks probes every realserver at its interval until ctx ends, each
// in a goroutine started by spawn.
func runChecks(ctx context.Context, cfg *Config, out chan<- checkResult, spawn func(func())) error {
	for i, s := range cfg.Services {
		for j, r := range s.Realservers {
			probe, err := NewProbe(r.Check, r.Address.Addr, r.Port)
			if err != nil {
				return fmt.Errorf("services[%d].realservers[%d].check: %w", i, j, err)
			}
			spawn(func() {
				tick := time.NewTicker(r.Check.Interval)
				defer tick.Stop()
				for {
					pctx, cancel := context.WithTimeout(ctx, r.Check.Timeout)
					err := probe(pctx)
					cancel()
					select {
					case out <- checkResult{i, j, err}:
					case <-ctx.Done():
						return
					}
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
			})
		}
	}
	return nil
}
