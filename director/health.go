package director

import (
	"context"
	"database/sql"
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
	case "mysql-ping":
		mc := mysql.NewConfig()
		mc.User, mc.Passwd, mc.Net, mc.Addr = cfg.User, cfg.Password, "tcp", target
		mc.Timeout, mc.ReadTimeout, mc.Logger = cfg.Timeout, cfg.Timeout, &mysql.NopLogger{}
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, err
		}
		db := sql.OpenDB(conn)
		db.SetMaxIdleConns(0) // a fresh connection each time: what clients get
		return db.PingContext, nil
	}
	return nil, fmt.Errorf("check %s is not implemented yet", cfg.Type)
}

// checkResult is one probe's outcome for realserver index rs of service svc.
type checkResult struct {
	svc, rs int
	err     error
}

// runChecks probes every realserver at its interval until ctx ends.
func runChecks(ctx context.Context, cfg *Config, out chan<- checkResult) error {
	for i, s := range cfg.Services {
		for j, r := range s.Realservers {
			probe, err := NewProbe(r.Check, netip.MustParseAddr(r.Address), r.Port)
			if err != nil {
				return fmt.Errorf("services[%d].realservers[%d].check: %w", i, j, err)
			}
			go func() {
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
			}()
		}
	}
	return nil
}
