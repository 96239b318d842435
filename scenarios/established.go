package scenarios

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// What the peer REDIRECT (FixFwmark) costs connections established
// across a failover. A connection the MASTER forwarded to the BACKUP is
// served there at the box's own address: conntrack made the REDIRECT's
// NAT when its SYN came from the MASTER, and keeps applying it when,
// after a takeover, the client's segments reach the box directly. With
// the mark alone the BACKUP served it locally too (an unmarked packet
// finds no service), and after the takeover IPVS schedules SYNs only, so
// the client's segments go to the local socket again. Either way the
// connections the old MASTER served itself break: the client now reaches
// a box with no socket for them.

// Established is what became of connections open across a failover, by
// the box that served them before it.
type Established struct {
	// BackupServed are the connections the BACKUP served before the
	// MASTER's director was killed; BackupKept those answering after the
	// takeover from the same server. MasterServed and MasterKept the
	// same for the MASTER's own.
	BackupServed, BackupKept, MasterServed, MasterKept int
}

func (e Established) String() string {
	return fmt.Sprintf("of %d connections the BACKUP served, %d answered after the takeover; of the MASTER's %d, %d",
		e.BackupServed, e.BackupKept, e.MasterServed, e.MasterKept)
}

// EstablishedAcrossFailover opens n connections to the VIP on a settled
// pair impl runs in l, each asking which server serves it, SIGKILLs the
// MASTER's director (killForClient), and asks each connection again.
func EstablishedAcrossFailover(ctx context.Context, l *lab.Lab, c Cluster, impl Implementation, n int) (Established, error) {
	var e Established
	client := l.Box(clientNode(l.Topo))
	vip := net.JoinHostPort(c.VIP.String(), fmt.Sprint(c.Port))
	db := client.OpenMySQL(vip, 2*time.Second)
	defer db.Close()
	db.SetMaxIdleConns(n)
	conns := make([]*sql.Conn, n)
	served := make([]int, n)
	for i := range conns {
		conn, err := db.Conn(ctx)
		if err != nil {
			return e, err
		}
		defer conn.Close()
		if err := conn.QueryRowContext(ctx, "SELECT @@server_id").Scan(&served[i]); err != nil {
			return e, fmt.Errorf("connection %d before the failover: %w", i, err)
		}
		conns[i] = conn
	}
	if _, err := killForClient(ctx, l, c, impl); err != nil {
		return e, err
	}
	backupID := l.ServerID(c.Directors[1].Node)
	for i, conn := range conns {
		var now int
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := conn.QueryRowContext(qctx, "SELECT @@server_id").Scan(&now)
		cancel()
		kept := err == nil && now == served[i]
		if served[i] == backupID {
			e.BackupServed++
			if kept {
				e.BackupKept++
			}
		} else {
			e.MasterServed++
			if kept {
				e.MasterKept++
			}
		}
	}
	return e, nil
}
