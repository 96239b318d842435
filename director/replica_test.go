package director

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/labtest"
)

func TestReplicaHealthy(t *testing.T) {
	ok := map[string]string{"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": "3"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range ok {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		status map[string]string
		want   string // "" for healthy, else a part of the error
	}{
		{"healthy", ok, ""},
		{"mysql 8 names", map[string]string{"Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes", "Seconds_Behind_Source": "0"}, ""},
		{"not a replica", map[string]string{}, "not a replica"},
		{"io stopped", with("Slave_IO_Running", "No"), "IO thread is not running (No)"},
		{"io connecting", with("Slave_IO_Running", "Connecting"), "IO thread is not running (Connecting)"},
		{"sql stopped", with("Slave_SQL_Running", "No"), "SQL thread is not running"},
		{"lag null", with("Seconds_Behind_Master", ""), "lag unknown"},
		{"lag over", with("Seconds_Behind_Master", "6"), "replica lag 6s exceeds max_lag 5s"},
		{"lag at limit", with("Seconds_Behind_Master", "5"), ""},
	} {
		err := replicaHealthy(tc.status, 5*time.Second)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestReplicaCheck runs the mysql-replica check against real MariaDB
// replication in a lab: d2 replicates from d1.
func TestReplicaCheck(t *testing.T) {
	l := labtest.Build(t, labtest.DefaultTopology(t), lab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := l.Box("client")
	source := client.OpenMySQL("192.168.1.233:3306", 5*time.Second)
	replica := client.OpenMySQL("192.168.1.213:3306", 5*time.Second)
	defer source.Close()
	defer replica.Close()
	probe, err := NewProbe(CheckConfig{Type: "mysql-replica", Timeout: 2 * time.Second, MaxLag: 5 * time.Second,
		User: "lab", Password: "lab"}, netip.MustParseAddr("192.168.1.213"), 3306)
	if err != nil {
		t.Fatal(err)
	}
	check := func() error { return client.Do(func() error { return probe(ctx) }) }

	if err := check(); err == nil || !strings.Contains(err.Error(), "not a replica") {
		t.Fatalf("before replication: got %v, want 'not a replica'", err)
	}
	var file string
	var pos int64
	var skip1, skip2 any
	if err := source.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&file, &pos, &skip1, &skip2); err != nil {
		t.Fatalf("SHOW MASTER STATUS on d1: %v", err)
	}
	for _, q := range []string{
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='192.168.1.233', MASTER_USER='lab', MASTER_PASSWORD='lab', MASTER_LOG_FILE='%s', MASTER_LOG_POS=%d", file, pos),
		"START SLAVE",
	} {
		if _, err := replica.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for err := check(); err != nil; err = check() {
		if ctx.Err() != nil {
			t.Fatalf("replication never became healthy: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// It really replicates: a row written on d1 shows on d2.
	if _, err := source.ExecContext(ctx, "INSERT INTO lab.writes (id) VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	var n int
	for n == 0 && ctx.Err() == nil {
		replica.QueryRowContext(ctx, "SELECT COUNT(*) FROM lab.writes WHERE id = 42").Scan(&n)
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 {
		t.Fatalf("the row written on d1 never reached d2")
	}
	if _, err := replica.ExecContext(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	if err := check(); err == nil || !strings.Contains(err.Error(), "SQL thread is not running") {
		t.Errorf("SQL thread stopped: got %v", err)
	}
	if _, err := replica.ExecContext(ctx, "STOP SLAVE"); err != nil {
		t.Fatal(err)
	}
}
