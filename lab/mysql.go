package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lvslab/lvslab/fixtures"
	"github.com/lvslab/lvslab/lab/runenv"
	"golang.org/x/sys/unix"
)

// MySQL credentials of the lab user that fixtures/mysql/schema.sql creates.
const (
	MySQLUser     = "lab"
	MySQLPassword = "lab"
	MySQLPort     = 3306
)

// innodbLogSize keeps each datadir copy small (26 MB instead of 114 MB);
// template and servers must agree on it.
const innodbLogSize = "--innodb-log-file-size=8M"

// startServices starts every node's services: one mariadbd per mysql node,
// all started at once, then waited for.
func (l *Lab) startServices(ctx context.Context) error {
	var nodes []string
	for _, n := range l.Topo.Nodes {
		if n.HasService(ServiceMySQL) {
			nodes = append(nodes, n.Name)
		}
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			t0 := time.Now()
			if _, errs[i] = l.StartMariaDB(ctx, n); errs[i] == nil {
				l.progress("mariadb: %s ready in %.2fs", n, time.Since(t0).Seconds())
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StartMariaDB starts mariadbd in node from a copy of the template
// datadir and waits until it answers a ping.
func (l *Lab) StartMariaDB(ctx context.Context, node string) (*Process, error) {
	tmpl, err := l.template(ctx)
	if err != nil {
		return nil, err
	}
	slot, err := l.admit(ctx, AdmitServer)
	if err != nil {
		return nil, err
	}
	defer slot.Release()
	data := filepath.Join(l.Dir, node, "mysql")
	os.RemoveAll(data) // a server started again starts from the template again
	if err := copyDir(data, tmpl); err != nil {
		return nil, fmt.Errorf("copy datadir for %s: %w", node, err)
	}
	return l.runMariaDB(ctx, node)
}

// RestartMariaDB starts node's mariadbd again on the datadir it left when
// it stopped (what it acknowledged stays) and waits until it answers a
// ping.
func (l *Lab) RestartMariaDB(ctx context.Context, node string) (*Process, error) {
	slot, err := l.admit(ctx, AdmitServer)
	if err != nil {
		return nil, err
	}
	defer slot.Release()
	return l.runMariaDB(ctx, node)
}

func (l *Lab) runMariaDB(ctx context.Context, node string) (*Process, error) {
	p, err := l.startMariaDB(node)
	if err != nil {
		return nil, err
	}
	return p, l.WaitMySQL(ctx, node, p)
}

// template writes the schema the servers load and returns the template
// datadir they copy.
func (l *Lab) template(ctx context.Context) (string, error) {
	l.tmplMu.Lock()
	defer l.tmplMu.Unlock()
	if l.tmpl != "" {
		return l.tmpl, nil
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "schema.sql"), fixtures.Schema, 0o644); err != nil {
		return "", fmt.Errorf("write schema: %w", err)
	}
	tmpl, err := EnsureTemplate(ctx, l.opts.Progress)
	if err != nil {
		return "", err
	}
	l.tmpl = tmpl
	return tmpl, nil
}

// EnsureTemplate returns the MariaDB template datadir for this mariadbd,
// making it the first time (mariadb-install-db: 0.9 s natively, 7.5 s
// under TCG), one process at a time. make run and make test make it on
// the host (lvslab prepare) before any lab starts. In the micro-VM the
// host's cache is read-only over 9p, and copies from it cost a lab ~2 s of
// CPU under TCG (pprof: 53% of a scenario's own CPU): the template is
// staged once per VM onto the guest's /run, a tmpfs that goes with the VM,
// or made there if the host has none.
func EnsureTemplate(ctx context.Context, progress io.Writer) (string, error) {
	cached, err := templateCache()
	if err != nil {
		return "", err
	}
	dst := cached
	if runenv.InMicroVM() {
		dst = filepath.Join("/run", "lvslab-mariadb", filepath.Base(cached))
	}
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("mariadb template: %w", err)
	}
	lock, err := LockFile(ctx, dst+".lock")
	if err != nil {
		return "", fmt.Errorf("mariadb template: %w", err)
	}
	defer lock.Close()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil // made while we waited
	}
	if dst != cached {
		if _, err := os.Stat(cached); err == nil {
			return dst, storeTemplate(cached, dst)
		}
	}
	t0 := time.Now()
	fmt.Fprintf(progress, "lvslab: mariadb: creating the template datadir %s (once)\n", dst)
	if err := installDB(ctx, dst); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "lvslab: mariadb: template ready in %.1fs\n", time.Since(t0).Seconds())
	return dst, nil
}

// templateCache is the cache directory of a template for this mariadbd
// and our InnoDB settings. The binary is known by its path, size and
// modification time (a package upgrade changes them), not by running
// `mariadbd --version`: under TCG that costs 0.3 s of CPU per lab.
func templateCache() (string, error) {
	path, err := exec.LookPath("mariadbd")
	if err != nil {
		return "", fmt.Errorf("mariadbd not found: install mariadb-server (make deps)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	id := fmt.Sprintf("%s %d %d %s", path, fi.Size(), fi.ModTime().UnixNano(), innodbLogSize)
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(runenv.CacheDir(), "mariadb", hex.EncodeToString(sum[:6])), nil
}

// storeTemplate copies dir into the cache next to dst, then renames it
// into place: a cached template is always complete.
func storeTemplate(dir, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := copyDir(filepath.Join(tmp, "d"), dir); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "d"), dst); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return err // another lab may have won the race: fine
	}
	return nil
}

// installDB makes a template datadir at dst with mariadb-install-db: in
// a directory beside it, renamed into place, so a template is always
// complete. It opens no socket: the host's namespace will do.
func installDB(ctx context.Context, dst string) error {
	if _, err := exec.LookPath("mariadb-install-db"); err != nil {
		return fmt.Errorf("mariadb-install-db not found: install mariadb-server (make deps)")
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return fmt.Errorf("mariadb template: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+filepath.Join(tmp, "d"),
		"--auth-root-authentication-method=normal", "--skip-test-db", "--user=root", innodbLogSize)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // not outliving a killed lvslab
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mariadb-install-db: %w: %s", err, Tail(string(out), 5))
	}
	return os.Rename(filepath.Join(tmp, "d"), dst)
}

func (l *Lab) startMariaDB(node string) (*Process, error) {
	b := l.boxes[node]
	if b == nil {
		return nil, fmt.Errorf("start mariadbd: no node %q", node)
	}
	data := filepath.Join(l.Dir, node, "mysql")
	return b.Start("mariadbd", []string{
		"mariadbd", "--no-defaults", "--datadir=" + data, "--user=root",
		fmt.Sprintf("--server-id=%d", l.ServerID(node)),
		fmt.Sprintf("--port=%d", MySQLPort), "--bind-address=0.0.0.0",
		"--socket=" + filepath.Join(data, "mysqld.sock"), "--pid-file=" + filepath.Join(data, "mysqld.pid"),
		"--init-file=" + filepath.Join(l.Dir, "schema.sql"), "--skip-name-resolve",
		innodbLogSize, "--innodb-buffer-pool-size=32M", "--performance-schema=OFF",
		// MyISAM's key buffer and Aria's page cache default to 128 MB
		// each, for tables a lab hardly uses: at 1 MB mariadbd starts on
		// 16% less CPU under TCG (93 against 111 ticks, 4 starts each).
		"--key-buffer-size=1M", "--aria-pagecache-buffer-size=1M",
		// A binary log, so any node can be a replication source (the
		// seed's boxes replicate; the mysql-replica check reads that).
		"--log-bin=binlog",
	})
}

// copyDir copies the tree src to dst (directories and regular files,
// sparsely: see copySparse).
func copyDir(dst, src string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("copy %s: not a regular file", path)
		}
		if err := copySparse(target, path); err != nil {
			return fmt.Errorf("copy %s: %w", path, err)
		}
		return nil
	})
}

// copySparse copies the file src to dst, leaving holes where src has holes
// or 4 KiB pages of zeros. A fresh InnoDB datadir is mostly zeros (here
// 2037 of ib_logfile0's 2048 pages, 2638 of ibdata1's 3072): its copies
// write 6.7 MB instead of 26 MB, which under TCG is most of a lab's CPU.
func copySparse(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	// Most of a datadir's files are small: a buffer of their size (a
	// 256 KiB one for each, zeroed, was 16% of the copies' CPU under
	// TCG).
	size := fi.Size()
	buf := make([]byte, min(size, 256<<10))
	for off := int64(0); off < size; {
		// Skip src's holes where the file system can say (tmpfs, ext4).
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		} else if err != nil {
			data = off
		}
		n, err := in.ReadAt(buf[:min(int64(len(buf)), size-data)], data)
		if n == 0 {
			out.Close()
			return err
		}
		for p := 0; p < n; p += pageSize {
			page := buf[p:min(p+pageSize, n)]
			if !allZero(page) {
				if _, err := out.WriteAt(page, data+int64(p)); err != nil {
					out.Close()
					return err
				}
			}
		}
		off = data + int64(n)
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

const pageSize = 4096

var zeroPage [pageSize]byte

func allZero(b []byte) bool { return bytes.Equal(b, zeroPage[:len(b)]) }

// ServerID is the @@server_id of a node's mariadbd: server_id from the
// topology, else the node's position + 1.
func (l *Lab) ServerID(node string) int {
	for i, n := range l.Topo.Nodes {
		if n.Name == node {
			if n.ServerID > 0 {
				return n.ServerID
			}
			return i + 1
		}
	}
	return 0
}

// OpenMySQL returns a pool that dials addr (host:port) as the lab user from
// inside box; each new connection is dialled in the box's namespace.
func (b *Box) OpenMySQL(addr string, timeout time.Duration) *sql.DB {
	conn, _ := mysql.NewConnector(b.MySQLConfig(addr, timeout)) // only fails on a bad config
	return sql.OpenDB(conn)
}

// MySQLConfig is OpenMySQL's driver configuration: the lab user, timeout
// for the connect and every read and write, dialled from inside box.
func (b *Box) MySQLConfig(addr string, timeout time.Duration) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = MySQLUser, MySQLPassword
	cfg.Net, cfg.Addr = "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = timeout, timeout, timeout
	cfg.DialFunc = b.DialContext
	// Failures come back as errors; the driver's own log lines would only
	// repeat them on stderr (readiness pings, loop scenarios).
	cfg.Logger = &mysql.NopLogger{}
	return cfg
}

// A starting mariadbd is failed when it makes no progress, not after a
// fixed time: on a loaded machine (six labs on two TCG cores) a healthy
// server took 47 s. Progress is its log growing or its CPU time moving;
// none for MySQLStall fails it, with the evidence. MySQLCeiling bounds a
// server that progresses but never answers.
const (
	MySQLStall   = 30 * time.Second
	MySQLCeiling = 10 * time.Minute
)

// WaitMySQL pings the node's mariadbd over TCP from inside its namespace
// until it answers, p exits, or it stalls (MySQLStall); errors carry the
// tail of the server log and the process's state.
func (l *Lab) WaitMySQL(ctx context.Context, node string, p *Process) error {
	b := l.boxes[node]
	db := b.OpenMySQL(fmt.Sprintf("127.0.0.1:%d", MySQLPort), time.Second)
	defer db.Close()
	progress := func() uint64 { return fileSize(p.Log) + procCPU(p.Pid()) }
	w := NewStallWatch(MySQLStall, MySQLCeiling, progress)
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("mariadbd in %s exited: %s", node, LogTail(p.Log, 5))
		case <-ctx.Done():
			return fmt.Errorf("mariadbd in %s not ready: %w (%v): %s", node, ctx.Err(), err, LogTail(p.Log, 5))
		case <-time.After(20 * time.Millisecond):
		}
		if why := w.Stalled(); why != "" {
			return fmt.Errorf("mariadbd in %s not ready: %s (last ping: %v; %s): %s", node, why, err, procState(p.Pid()), LogTail(p.Log, 5))
		}
	}
}

func fileSize(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return uint64(fi.Size())
}

// LogTail is the last n lines of a log file on one line: see lab/runenv.
func LogTail(path string, n int) string { return runenv.LogTail(path, n) }

// Tail is the last n lines of s joined with " | ", or "(empty)".
func Tail(s string, n int) string { return runenv.Tail(s, n) }
