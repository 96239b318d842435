package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"github.com/lvslab/lvslab/lab/labtest"
	"github.com/lvslab/lvslab/lab/runenv"
	"github.com/lvslab/lvslab/scenarios"
)

// lvslab is the binary under test, built once by TestMain.
var lvslab string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lvslab-bin")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // TestUpNotRoot runs it as nobody
	lvslab = filepath.Join(dir, "lvslab")
	build := exec.Command("go", "build", "-o", lvslab, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // it is also the micro-VM's /init
	if out, err := build.CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs lvslab and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	// No command of a test may hang it: 3 minutes covers a VM's boot.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lvslab, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run lvslab %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// TestHelp: help asked for goes to stdout, exit 0; every flag a command
// has is in its help (the synopsis cannot drift from the flags); an
// unknown command is exit 2; the shells get a completion script.
func TestHelp(t *testing.T) {
	for _, c := range commands {
		stdout, stderr, code := cli(t, c.name, "--help")
		if code != 0 || strings.Count(stdout, "Usage: lvslab "+c.name) != 1 || stderr != "" {
			t.Errorf("lvslab %s --help: exit %d, stdout %q, stderr %q; want exit 0 and one usage on stdout", c.name, code, stdout, stderr)
		}
		if stdout, _, _ := cli(t, "help", c.name); strings.Count(stdout, "Usage: lvslab "+c.name) != 1 {
			t.Errorf("lvslab help %s: %q; want one usage", c.name, stdout)
		}
	}
	stdout, _, code := cli(t, "run", "--help")
	for _, f := range []string{"--connections", "--cell", "--jobs", "--repeat", "--run-id", "-v, --verbose"} {
		if code != 0 || !strings.Contains(stdout, f) {
			t.Errorf("lvslab run --help does not list %s:\n%s", f, stdout)
		}
	}
	if stdout, _, code := cli(t, "--help"); code != 0 || !strings.Contains(stdout, "lvslab check [flags] BOX1.conf BOX2.conf") {
		t.Errorf("lvslab --help: exit %d, %q; want the commands on stdout", code, stdout)
	}
	if _, stderr, code := cli(t, "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: got exit %d, %q; want 2", code, stderr)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if stdout, _, code := cli(t, "completion", sh); code != 0 || !strings.Contains(stdout, "lvslab") {
			t.Errorf("lvslab completion %s: exit %d, %d bytes", sh, code, len(stdout))
		}
	}
}

// TestFlagsAnywhere: flags after the configs are read as flags (as
// kubectl's are), once, the same as before them.
func TestFlagsAnywhere(t *testing.T) {
	a, b := "../../fixtures/check/reference/db1.conf", "../../fixtures/check/reference/db2.conf"
	before, _, code1 := cli(t, "check", "--plan", "--mac", "d1=02:00:00:00:01:01", a, b)
	after, stderr, code2 := cli(t, "check", a, b, "--mac", "d1=02:00:00:00:01:01", "--plan")
	if code1 != code2 || before != after || !strings.Contains(after, "02:00:00:00:01:01") {
		t.Errorf("flags after the configs: exit %d against %d, stderr %q; outputs differ or lack the MAC:\n%s", code2, code1, stderr, after)
	}
}

func TestUpBadTopology(t *testing.T) {
	labtest.RequireRoot(t)
	snap := labtest.Snapshot(t) // before: a check after would compare with itself
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nnodes:\n  - name: a\n    interfaces:\n      - name: eth0\n        bridge: nowhere\n"), 0o644)
	runDir := t.TempDir()
	_, stderr, code := cli(t, "up", "--lab", "badtopo", "--run-dir", runDir, "-t", bad)
	want := bad + ":6: nodes[0].interfaces[0].bridge: link to missing bridge \"nowhere\""
	if code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("got exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 1 {
		t.Errorf("error spans %d lines, want the building line and one error line:\n%s", n+1, stderr)
	}
	snap.ExpectClean(t, runDir, "badtopo")
}

func TestUpNotRoot(t *testing.T) {
	labtest.RequireRoot(t)
	snap := labtest.Snapshot(t)
	runDir := t.TempDir()
	cmd := exec.Command(lvslab, "up", "--lab", "notroot", "--run-dir", runDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "needs root") {
		t.Errorf("as nobody: got exit %d, output %q; want exit 1 and 'needs root'", code, out)
	}
	snap.ExpectClean(t, runDir, "notroot")
}

func TestUpExecStatusDown(t *testing.T) {
	labtest.RequireRoot(t)
	runDir, name := t.TempDir(), lab.RandomName()
	snap := labtest.Snapshot(t)
	t.Cleanup(func() { cli(t, "sweep", "--lab", name, "--run-dir", runDir) })
	stdout, stderr, code := cli(t, "up", "--kernel", "native", "--lab", name, "--run-dir", runDir)
	if code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"02:00:c0:a8:01:e9", "192.168.1.200/32", "mariadbd", "lvslab exec --lab " + name} {
		if !strings.Contains(stdout, want) {
			t.Errorf("up output lacks %q:\n%s", want, stdout)
		}
	}
	// The lab outlives `up`: another process reaches it.
	out, stderr, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, "client", "--",
		"mariadb", "-h", "192.168.1.213", "-u", lab.MySQLUser, "-p"+lab.MySQLPassword, "-N", "-e", "select @@server_id")
	if code != 0 || strings.TrimSpace(out) != "2" {
		t.Errorf("exec mariadb on d2: exit %d, out %q, err %q; want exit 0 and server_id 2", code, out, stderr)
	}
	if _, _, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, "d1", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec exit code: got %d, want 7", code)
	}
	if out, _, code := cli(t, "status", "--lab", name, "--run-dir", runDir); !strings.Contains(out, "running") || code != 0 {
		t.Errorf("status: exit %d, shows no running process:\n%s", code, out)
	}
	// A backend that died makes status fail, naming it.
	data, _ := os.ReadFile(filepath.Join(runDir, name, "pids", "d2.mariadbd.pid"))
	var pid int
	fmt.Sscan(string(data), &pid)
	if pid <= 0 || syscall.Kill(pid, syscall.SIGKILL) != nil {
		t.Fatalf("d2's mariadbd pid file: %q", data)
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, stderr, code := cli(t, "status", "--lab", name, "--run-dir", runDir); code != 1 || !strings.Contains(stderr, "mariadbd in d2 exited") {
		t.Errorf("status with d2's mariadbd killed: exit %d, %q; want exit 1 naming it", code, stderr)
	}
	if _, stderr, code := cli(t, "down", "--lab", name, "--run-dir", runDir); code != 0 || !strings.Contains(stderr, "removed 4 namespaces") {
		t.Errorf("down: exit %d, %q; want exit 0 and 4 namespaces removed", code, stderr)
	}
	snap.ExpectClean(t, runDir, name)
	if _, stderr, code := cli(t, "status", "--lab", name, "--run-dir", runDir); code == 0 || !strings.Contains(stderr, "no lab") {
		t.Errorf("status after down: exit %d, %q; want an error saying there is no lab", code, stderr)
	}
}

// TestSweepAfterKilledUp kills `lvslab up` while it builds and proves a sweep
// leaves nothing: namespaces, mounts, mariadbd or mariadb-install-db.
func TestSweepAfterKilledUp(t *testing.T) {
	labtest.RequireRoot(t)
	runDir, name := t.TempDir(), lab.RandomName()
	snap := labtest.Snapshot(t)
	up := exec.Command(lvslab, "up", "--kernel", "native", "--lab", name, "--run-dir", runDir)
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the MariaDB step has begun: namespaces exist, processes run.
	logs := filepath.Join(runDir, name, "logs")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ents, _ := os.ReadDir(logs); len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			up.Process.Kill()
			t.Fatalf("up never reached the MariaDB step")
		}
		time.Sleep(5 * time.Millisecond)
	}
	up.Process.Kill()
	up.Wait()
	if ns, _ := filepath.Glob(filepath.Join(lab.NetnsDir, lab.Prefix+name+".*")); len(ns) == 0 {
		t.Fatalf("killed up left no namespaces: the test did not kill it mid-build")
	}
	_, stderr, code := cli(t, "sweep", "--lab", name, "--run-dir", runDir)
	if code != 0 {
		t.Fatalf("sweep: exit %d: %s", code, stderr)
	}
	snap.ExpectClean(t, runDir, name)
}

// vmLab prepares a test of a lab kept in a micro-VM (from the host, as
// root, with qemu): its run directory and name, a snapshot of the host to
// find leaks against, and a sweep at the end.
func vmLab(t *testing.T) (runDir, name string, snap labtest.HostState) {
	labtest.RequireRoot(t)
	if runenv.InMicroVM() {
		t.Skip("already inside a micro-VM")
	}
	if _, err := kernel.QEMU(); err != nil {
		labtest.Missing(t, err.Error())
	}
	runDir, name = t.TempDir(), lab.RandomName()
	snap = labtest.Snapshot(t)
	t.Cleanup(func() { cli(t, "sweep", "--lab", name, "--run-dir", runDir) })
	return runDir, name, snap
}

// TestUpInVM keeps a lab in a micro-VM: where the host has no IPVS, the
// lab still has it, and exec, status and down reach it through the agent;
// collect runs on each box through exec while the client connects, and
// diagnose on the host sees the loop live.
func TestUpInVM(t *testing.T) {
	runDir, name, snap := vmLab(t)
	// A cluster to poke at: keepalived, no fix (the loop).
	stdout, stderr, code := cli(t, "up", "--kernel", "vm", "--memory", "1024", "--lab", name, "--run-dir", runDir, "--directors", "keepalived", "--fix", "none")
	if code != 0 || !strings.Contains(stdout, "192.168.1.200/32") || !strings.Contains(stdout, "micro-VM") {
		t.Fatalf("up --kernel vm --directors keepalived: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	out, stderr, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, "d2", "--", "ipvsadm", "-Ln")
	if code != 0 || !strings.Contains(out, "TCP  192.168.1.200:3306 rr") {
		t.Errorf("exec ipvsadm on the BACKUP: exit %d, %q %q; want its VIP:3306 service (no fix)", code, out, stderr)
	}
	out, _, code = cli(t, "exec", "--lab", name, "--run-dir", runDir, "d1", "--", "ip", "-o", "addr", "show", "dev", "eth0")
	if code != 0 || !strings.Contains(out, "192.168.1.200/24") {
		t.Errorf("the MASTER d1 holds no VIP on eth0: exit %d, %q", code, out)
	}
	// watch, through the agent, not on a terminal: a header and plain lines.
	out, stderr, code = cli(t, "watch", "--lab", name, "--run-dir", runDir, "--count", "2", "--interval", "500ms")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.Contains(lines[0], "d1 ipvs") ||
		!strings.HasSuffix(lines[2], " d1") {
		t.Errorf("watch: exit %d, %q %q; want a header and two lines with d1 holding the VIP", code, out, stderr)
	}
	out, _, code = cli(t, "exec", "--lab", name, "--run-dir", runDir, "client", "--",
		"mariadb", "-h", "192.168.1.233", "-u", lab.MySQLUser, "-p"+lab.MySQLPassword, "-N", "-e", "select @@server_id")
	if code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("exec mariadb on d1 in the VM lab: exit %d, %q; want server_id 1", code, out)
	}
	if _, _, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, "d2", "--", "sh", "-c", "exit 9"); code != 9 {
		t.Errorf("exit code through the agent: got %d, want 9", code)
	}
	// watch, killed mid-stream in each way a user ends it; each time exec
	// still answers with its own output, beside a second watch that runs on.
	beside := startWatch(t, runDir, name)
	for _, end := range []string{"SIGINT", "SIGTERM", "SIGKILL", "closed pipe"} {
		w := startWatch(t, runDir, name)
		w.end(t, end)
		out, stderr, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, "d1", "--", "echo", "after-"+end)
		if code != 0 || out != "after-"+end+"\n" {
			t.Errorf("exec after a watch ended by %s: exit %d, %q %q; want only its own output", end, code, out, stderr)
		}
	}
	beside.end(t, "SIGINT")
	if out, _, _ := cli(t, "status", "--lab", name, "--run-dir", runDir); !strings.Contains(out, "mariadbd") || !strings.Contains(out, "keepalived") {
		t.Errorf("status through the agent shows no mariadbd or director:\n%s", out)
	}
	collectAndDiagnose(t, runDir, name)
	// The guest powers off once the agent has torn the lab down: qemu
	// exits by itself, it is not killed.
	if _, stderr, code := cli(t, "down", "--lab", name, "--run-dir", runDir); code != 0 || !strings.Contains(stderr, "the VM powered off in") ||
		!strings.Contains(stderr, "run dir removed") {
		t.Errorf("down: exit %d: %s; want the VM powered off by itself, the run dir removed", code, stderr)
	}
	snap.ExpectClean(t, runDir, name)
	if left := lab.ProcessesMentioning(filepath.Join(runDir, name)); len(left) > 0 {
		t.Errorf("leak: %v", left)
	}
}

// collectAndDiagnose collects, through lvslab exec, from each box of the
// keepalived pair without a fix in the VM lab name while the client
// connects, and diagnoses the bundles on the host: the loop seen live on
// the BACKUP, exit 1.
func collectAndDiagnose(t *testing.T, runDir, name string) {
	t.Helper()
	traffic := exec.Command(lvslab, "exec", "--lab", name, "--run-dir", runDir, "client", "--", "sh", "-c",
		"for i in $(seq 60); do timeout 2 mariadb -h 192.168.1.200 -u "+lab.MySQLUser+" -p"+lab.MySQLPassword+" -e 'select 1' >/dev/null 2>&1; done")
	if err := traffic.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { traffic.Process.Kill(); traffic.Wait() }()
	dir := t.TempDir()
	var bundles []string
	for _, node := range []string{"d1", "d2"} {
		config := filepath.Join(lab.DefaultRunDir, name, node, "keepalived", "keepalived.conf") // in the VM
		out, stderr, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, node, "--", lvslab, "collect", "--config", config, "--seconds", "4", "--out", "-")
		if code != 0 {
			t.Fatalf("collect on %s through exec: exit %d: %s", node, code, stderr)
		}
		p := filepath.Join(dir, node+".tar.gz")
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		bundles = append(bundles, p)
	}
	out, stderr, code := cli(t, append([]string{"diagnose"}, bundles...)...)
	if code != 1 || !strings.Contains(out, "d2: live: this box re-balances traffic while BACKUP") {
		t.Errorf("diagnose: exit %d, %q %q; want 1 and the loop seen live on d2", code, out, stderr)
	}
}

// watcher is a `lvslab watch` of a VM lab, its first line read.
type watcher struct {
	cmd *exec.Cmd
	out io.ReadCloser
}

func startWatch(t *testing.T, runDir, name string) *watcher {
	t.Helper()
	cmd := exec.Command(lvslab, "watch", "--lab", name, "--run-dir", runDir, "--interval", "200ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	header := make(chan error, 1)
	go func() { _, err := bufio.NewReader(out).ReadString('\n'); header <- err }()
	select {
	case err := <-header: // it streams
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("watch drew no header in a minute")
	}
	return &watcher{cmd, out}
}

// end ends the watch as a user would: a signal, or by closing the pipe
// it writes to (its next line then fails), and expects it gone within
// 20 s.
func (w *watcher) end(t *testing.T, how string) {
	t.Helper()
	switch how {
	case "SIGINT":
		w.cmd.Process.Signal(syscall.SIGINT)
	case "SIGTERM":
		w.cmd.Process.Signal(syscall.SIGTERM)
	case "SIGKILL":
		w.cmd.Process.Kill()
	case "closed pipe":
		w.out.Close()
	}
	exited := make(chan error, 1)
	go func() { io.Copy(io.Discard, w.out); exited <- w.cmd.Wait() }()
	select {
	case err := <-exited:
		// a terminal program ends cleanly on Ctrl-C and SIGTERM
		if (how == "SIGINT" || how == "SIGTERM") && err != nil {
			t.Errorf("watch ended by %s: %v, want exit 0", how, err)
		}
	case <-time.After(20 * time.Second):
		w.cmd.Process.Kill()
		t.Errorf("watch still running 20 s after %s", how)
	}
}

func TestDirectorCheckConfig(t *testing.T) {
	out, _, code := cli(t, "director", "check-config", "../../fixtures/director/d1.yaml")
	if code != 0 || !strings.Contains(out, "FWM 3 rr, 2 realservers") {
		t.Errorf("d1.yaml: exit %d, %q; want exit 0 and the FWM 3 service", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("vrrp: {interface: eth0, vrid: 0, priority: 100}\nservices: []\n"), 0o644)
	_, stderr, code := cli(t, "director", "check-config", bad)
	if code != 2 || !strings.Contains(stderr, bad+":1: vrrp.vrid: vrid 0: want 1-255") {
		t.Errorf("bad config: exit %d, %q; want exit 2 and file:line", code, stderr)
	}
}

// TestRunBadFlags: a bad --cell or --repeat is a one-line usage error
// (exit 2) before anything is built.
func TestRunBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--cell steady-state/keepalived":          "want EVENT/IMPLEMENTATION/FIX",
		"--cell steady/keepalived/none":           `event "steady": want one of [steady-state`,
		"--cell steady-state/haproxy/none":        `implementation "haproxy": want keepalived or lvslab`,
		"--cell steady-state/keepalived/iptables": `fix "iptables": want one of [none fwmark fwmark-only backup-only redirect]`,
		"--repeat 0": "--repeat 0: want 1 or more",
	} {
		_, stderr, code := cli(t, append([]string{"run"}, strings.Fields(args)...)...)
		if code != 2 || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("lvslab run %s: exit %d, stderr %q; want exit 2 and one line with %q", args, code, stderr, want)
		}
	}
}

// TestNamesThatArePaths: a lab or node name that is not a plain name is
// refused (exit 2) before it becomes part of a path: no command may enter
// another namespace, read another file, or sweep every lab by accident.
func TestNamesThatArePaths(t *testing.T) {
	for _, args := range [][]string{
		{"exec", "--lab", "rel1", "../../../../proc/self/ns/net", "--", "readlink", "/proc/self/ns/net"},
		{"status", "--lab", "../x"},
		{"exec", "--lab", "../x", "d1", "--", "true"},
		{"down", "--lab", "../x"},
		{"up", "--lab", ""},
		{"sweep", "--lab", ""},
		{"sweep", "--lab", "a/b"},
	} {
		stdout, stderr, code := cli(t, args...)
		if code != 2 || !strings.Contains(stderr, "bad name") || stdout != "" {
			t.Errorf("lvslab %q: exit %d, stdout %q, stderr %q; want exit 2 and a bad-name error", args, code, stdout, stderr)
		}
	}
}

// TestCheck: the reference pair needs the fix (exit 1, the rules and the
// diff printed, the fixed files written and accepted by lvslab check
// itself: exit 0); a broken config is exit 2 naming its file and line.
func TestCheck(t *testing.T) {
	ref := "../../fixtures/check/reference/"
	fixed := t.TempDir()
	out, stderr, code := cli(t, "check", "--plan", "--mac", "d1=52:54:00:aa:00:01", "--mac", "d2=52:54:00:aa:00:02", "--write-fixed", fixed, ref+"db1.conf", ref+"db2.conf")
	if code != 1 || !strings.Contains(out, "--mac-source 52:54:00:aa:00:02 -j MARK --set-xmark 0x3/0xffffffff") || !strings.Contains(out, "+virtual_server fwmark 3 {") {
		t.Fatalf("reference pair: exit %d\n%s%s\nwant exit 1, d1's rule excluding d2's given MAC, d2's config by fwmark 3, the same mark as d1", code, out, stderr)
	}
	out, stderr, code = cli(t, "check", "--plan", "--iptables", fixed+"/d1/iptables.rules", "--iptables", fixed+"/d2/iptables.rules", fixed+"/d1/db1.conf", fixed+"/d2/db2.conf")
	if code != 0 || !strings.Contains(out, "nothing to change") {
		t.Errorf("the written fix: exit %d\n%s%s\nwant exit 0, nothing to change", code, out, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(bad, []byte("vrrp_instance VI_1 {\n    priority 900\n}\n"), 0o644)
	_, stderr, code = cli(t, "check", bad, ref+"db2.conf")
	if code != 2 || !strings.Contains(stderr, bad+":2: priority: want a whole number from 1 to 255") {
		t.Errorf("bad config: exit %d, %q; want exit 2 and file:line", code, stderr)
	}
	// What the lab cannot run yet is said before anything is built: a NAT
	// service beside the DR one; an SCTP service.
	for _, c := range []struct{ add, want string }{
		{"virtual_server 192.168.1.200 3307 {\n lb_kind NAT\n protocol TCP\n real_server 192.168.1.233 3307 {\n }\n real_server 192.168.1.213 3307 {\n }\n}\n",
			"cannot run this pair in the lab yet: TCP 192.168.1.200:3307: lb_kind NAT: the lab runs DR services"},
		{"virtual_server 192.168.1.200 5060 {\n lb_kind DR\n protocol SCTP\n}\n", "SCTP services are not supported yet (TCP and UDP only)"},
	} {
		dir := t.TempDir()
		for _, b := range []string{"db1.conf", "db2.conf"} {
			data, _ := os.ReadFile(ref + b)
			os.WriteFile(filepath.Join(dir, b), append(data, c.add...), 0o644)
		}
		_, stderr, code = cli(t, "check", filepath.Join(dir, "db1.conf"), filepath.Join(dir, "db2.conf"))
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("exit %d, %q; want exit 2 and one line with %q", code, stderr, c.want)
		}
	}
	if _, stderr, code = cli(t, "check", "--keep", "mine", ref+"db1.conf", ref+"db2.conf"); code != 2 || !strings.Contains(stderr, "--keep \"mine\": want yours or prescribed") {
		t.Errorf("--keep mine: exit %d, %q", code, stderr)
	}
}

// TestCheckKeepInVM: lvslab check --keep leaves the user's pair running
// in the lab, its built-in backends as the lab's processes, until down.
func TestCheckKeepInVM(t *testing.T) {
	runDir, name, snap := vmLab(t)
	web := "../../fixtures/check/http/"
	stdout, stderr, code := cli(t, "check", "--keep", "yours", "--kernel", "vm", "--memory", "1024", "--lab", name, "--run-dir", runDir, web+"web1.conf", web+"web2.conf")
	if code != 0 || !strings.Contains(stdout, "your configs as given") || !strings.Contains(stdout, "backend-80") {
		t.Fatalf("check --keep yours: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// The BACKUP keeps the pair's own VIP:port service: the loop is there
	// to watch.
	out, stderr, code := cli(t, "exec", "--lab", name, "--run-dir", runDir, "d2", "--", "ipvsadm", "-Ln")
	if code != 0 || !strings.Contains(out, "TCP  10.20.0.50:80") || strings.Count(out, "Route") != 2 {
		t.Errorf("exec ipvsadm on the BACKUP: exit %d, %q %q; want 10.20.0.50:80 with both realservers", code, out, stderr)
	}
	if _, stderr, code := cli(t, "down", "--lab", name, "--run-dir", runDir); code != 0 {
		t.Errorf("down: exit %d: %s", code, stderr)
	}
	snap.ExpectClean(t, runDir, name)
}

// TestUpDirectorFlags: a bad --directors or --fix is a one-line usage
// error before anything is built.
func TestUpDirectorFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--directors haproxy":                  `--directors "haproxy": want keepalived, lvslab or mixed`,
		"--directors lvslab --fix redirect":    "--fix redirect is keepalived's notify scripts",
		"--directors keepalived --fix wishful": `--fix "wishful": want one of`,
	} {
		_, stderr, code := cli(t, append([]string{"up", "--lab", "flags"}, strings.Fields(args)...)...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("up %s: exit %d, %q; want exit 2 and %q", args, code, stderr, want)
		}
	}
}

// TestCheckPairArgs: the pair's flags as the agent in the micro-VM gets
// them back, with every path absolute.
func TestCheckPairArgs(t *testing.T) {
	fs := newFlags("check")
	pf := addCheckPairFlags(fs)
	if err := fs.Parse([]string{"--iptables", "a.rules", "--iptables", "b.rules", "--mac", "d1=02:00:00:00:00:01", "--port", "3=80", "a.conf", "b.conf"}); err != nil {
		t.Fatal(err)
	}
	got := pf.args(fs.Args())
	wd, _ := os.Getwd()
	again := newFlags("check")
	pf2 := addCheckPairFlags(again)
	if err := again.Parse(got); err != nil {
		t.Fatalf("%q: %v", got, err)
	}
	if !slices.Equal(pf2.rules, []string{wd + "/a.rules", wd + "/b.rules"}) || !slices.Equal(again.Args(), []string{wd + "/a.conf", wd + "/b.conf"}) ||
		!slices.Equal(pf2.macs, pf.macs) || !slices.Equal(pf2.ports, pf.ports) {
		t.Errorf("args %q", got)
	}
}

// TestWatchColumns: watch has a column of IPVS packets and one of ICMP
// time exceeded per director, three boxes as two.
func TestWatchColumns(t *testing.T) {
	c := scenarios.Cluster{Directors: []scenarios.Director{{Node: "d1"}, {Node: "d2"}, {Node: "d3"}}}
	last := scenarios.Counters{IPVSPackets: []uint32{1, 2, 3}, TimeExceeded: []uint64{0, 0, 0}}
	now := scenarios.Counters{ClientFrames: 40, DirectorFrames: 90, IPVSPackets: []uint32{11, 2, 33}, TimeExceeded: []uint64{0, 5, 0}, VIP: []string{"d1"}}
	h, l := strings.Fields(watchHeader(c)), strings.Fields(watchLine(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), last, now))
	want := []string{"10:00:00", "40", "90", "10", "0", "30", "0", "5", "0"}
	if !strings.Contains(strings.Join(h, " "), "d3 ipvs d1 te d2 te d3 te VIP on") || !slices.Equal(l[:len(want)], want) {
		t.Errorf("header %q, line %q; want a column per director, %v", h, l, want)
	}
}

// TestIsTerminal: /dev/null is a character device, not a terminal: watch
// into it prints lines instead of redrawing one.
func TestIsTerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Errorf("%s taken for a terminal", os.DevNull)
	}
}

// TestDiagnoseCollectBadInputs: one line, exit 2, for what diagnose and
// collect cannot use.
func TestDiagnoseCollectBadInputs(t *testing.T) {
	notBundle := t.TempDir()
	for _, args := range [][]string{
		{"diagnose", "one.tar.gz"},
		{"diagnose", notBundle, notBundle},
		{"diagnose", "/nonexistent/a.tar.gz", "/nonexistent/b.tar.gz"},
		{"collect", "extra-argument"},
		{"collect", "--seconds", "3600"},
	} {
		if _, stderr, code := cli(t, args...); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("lvslab %v: exit %d, %q; want exit 2 and one line", args, code, stderr)
		}
	}
	if os.Geteuid() == 0 {
		if _, stderr, code := cli(t, "collect", "--config", "/nonexistent/keepalived.conf", "--out", filepath.Join(t.TempDir(), "x.tar.gz")); code != 2 ||
			!strings.Contains(stderr, "/nonexistent/keepalived.conf") {
			t.Errorf("collect of a missing config: exit %d, %q; want 2 naming it", code, stderr)
		}
	}
}
