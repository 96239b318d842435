// Package vmlab keeps a lab in a background micro-VM, for hosts whose
// kernel has no IPVS. `lvslab up` boots the VM with `lvslab agent` as its
// command; the agent builds the lab inside and serves requests (status,
// exec, down) on kernel.AgentPorts virtio-serial ports, each a unix socket
// in the lab's run directory on the host. A client takes a port by its
// lock file, so each port has one client at a time, and the agent serves
// the ports side by side: watch beside status and exec. A client that
// goes away (Ctrl-C, a kill, a closed pipe) cancels its own request: the
// guest sees the port hang up and no host come back, or the next request
// arrive. exec has no stdin.
//
// Wire format: the host writes one JSON Request line; the agent answers
// with frames of [kind byte][length uint32, big endian][payload], each in
// one write: 'h' first, carrying the request's ID (a client skips what
// came before it: the tail of an answer to a client that left), then 'o'
// and 'e' with the command's stdout and stderr, and 'x' ends the answer
// with a JSON Done.
package vmlab

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
	"golang.org/x/sys/unix"
)

// Request is what the host asks of the agent.
type Request struct {
	ID   string   `json:"id"`
	Op   string   `json:"op"` // status, exec, down
	Box  string   `json:"box,omitempty"`
	Argv []string `json:"argv,omitempty"`
}

// Done ends every answer.
type Done struct {
	Code   int         `json:"code"`
	Error  string      `json:"error,omitempty"`
	Status *lab.Status `json:"status,omitempty"`
}

const (
	frameHello  = 'h'
	frameStdout = 'o'
	frameStderr = 'e'
	frameDone   = 'x'
	// maxPayload keeps a frame within one buffer of the guest's port
	// (virtio_console takes at most 32 KiB a write), so that a frame is
	// never split between two clients.
	maxPayload = 32<<10 - 5
)

// GuestTopology is where the agent finds the topology: the run directory
// is the VM's control share.
var GuestTopology = filepath.Join(kernel.GuestCtl, "topology.yaml")

// Port is one agent port: a virtio-serial port in the guest, whose write
// deadline unblocks a write to a host that left.
type Port interface {
	io.ReadWriter
	SetWriteDeadline(time.Time) error
	// HostConnected reports whether a host holds the port now.
	HostConnected() bool
}

// DevicePort is a virtio-serial port device (/dev/vportNpM) as a Port.
type DevicePort struct{ *os.File }

// HostConnected: virtio_console polls POLLHUP while no host holds the
// port.
func (p DevicePort) HostConnected() bool {
	rc, err := p.SyscallConn()
	if err != nil {
		return false
	}
	hup := true
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		if _, err := unix.Poll(fds, 0); err == nil {
			hup = fds[0].Revents&unix.POLLHUP != 0
		}
	})
	return !hup
}

// frameWriter writes frames of one kind; writers share a mutex.
type frameWriter struct {
	mu   *sync.Mutex
	w    io.Writer
	kind byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for n := 0; n < len(p); {
		chunk := p[n:min(len(p), n+maxPayload)]
		if err := writeFrame(f.w, f.kind, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
	}
	return len(p), nil
}

func writeFrame(w io.Writer, kind byte, p []byte) error {
	buf := make([]byte, 5+len(p))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:], uint32(len(p)))
	copy(buf[5:], p)
	_, err := w.Write(buf)
	return err
}

// Serve is the agent: it answers requests on every port until a down
// request has closed the lab. buildErr, if set, is what status reports.
func Serve(ctx context.Context, l *lab.Lab, runDir string, buildErr error, ports ...Port) error {
	return serve(ctx, func(ctx context.Context, req Request, stdout, stderr io.Writer) Done {
		return handle(ctx, built{l, runDir, buildErr}, req, stdout, stderr)
	}, ports...)
}

// handler answers one request, writing a command's output to stdout and
// stderr; it ends early when ctx does.
type handler func(ctx context.Context, req Request, stdout, stderr io.Writer) Done

func serve(ctx context.Context, h handler, ports ...Port) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	downed := make(chan struct{}, len(ports))
	for _, p := range ports {
		go func() {
			if servePort(ctx, h, p) {
				downed <- struct{}{}
			}
		}()
	}
	<-downed
	return nil
}

// portEvent is a request line from the port's client, or (line nil) its
// hang-up.
type portEvent struct{ line []byte }

// hangupGrace is how long a port that read as hung up has for a host to
// hold it again before the hang-up counts. The guest learns of hosts
// opening and closing the port by control messages that travel apart
// from the data: it may read the next client's request before the last
// client's close, then see the port closed and opened again.
const hangupGrace = time.Second

// readPort turns what the port reads into events, in order. With no host
// connected the port reads as EOF: a hang-up once after a request (unless
// a host holds the port again within hangupGrace: the close was the last
// client's, or a new client's request will end the last one's), then
// quiet polling until a client connects.
func readPort(ctx context.Context, p Port, events chan<- portEvent) {
	r := bufio.NewReader(p)
	connected := false
	for ctx.Err() == nil {
		line, err := r.ReadBytes('\n')
		switch {
		case err == nil:
			connected = true
			events <- portEvent{line}
		case connected && !hostReturns(ctx, p):
			connected = false
			events <- portEvent{}
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// hostReturns reports whether a host holds p within hangupGrace.
func hostReturns(ctx context.Context, p Port) bool {
	for end := time.Now().Add(hangupGrace); ctx.Err() == nil && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if p.HostConnected() {
			return true
		}
	}
	return false
}

// servePort answers one port's requests, one at a time; a request ends
// early when its client hangs up or the next request arrives (one client
// at a time holds a port: a new request means the last client left). It
// reports whether a down request ended it.
func servePort(ctx context.Context, h handler, p Port) bool {
	events := make(chan portEvent, 16)
	go readPort(ctx, p, events)
	var mu sync.Mutex
	var next []byte
	for {
		line := next
		for next = nil; line == nil; {
			select {
			case <-ctx.Done():
				return false
			case ev := <-events:
				line = ev.line
			}
		}
		var req Request
		if err := json.Unmarshal(line, &req); err != nil {
			answer(p, &mu, req.ID, Done{Code: 2, Error: "bad request: " + err.Error()})
			continue
		}
		mu.Lock()
		writeFrame(p, frameHello, []byte(req.ID)) // a host gone mid-answer is no error
		mu.Unlock()
		reqCtx, cancel := context.WithCancel(ctx)
		result := make(chan Done, 1)
		go func() {
			result <- h(reqCtx, req, &frameWriter{&mu, p, frameStdout}, &frameWriter{&mu, p, frameStderr})
		}()
		var done Done
		select {
		case done = <-result:
		case ev := <-events: // the client left: end its request, unblock its writes
			cancel()
			p.SetWriteDeadline(time.Now())
			<-result
			p.SetWriteDeadline(time.Time{})
			next = ev.line
			continue
		}
		cancel()
		answer(p, &mu, req.ID, done)
		if req.Op == "down" {
			return true
		}
	}
}

func answer(p io.Writer, mu *sync.Mutex, id string, done Done) {
	data, _ := json.Marshal(done)
	mu.Lock()
	defer mu.Unlock()
	writeFrame(p, frameDone, data)
}

// built is the agent's lab: l under runDir, or err, why it was not built.
type built struct {
	l      *lab.Lab
	runDir string
	err    error
}

// handle answers req on the agent's lab b.
func handle(ctx context.Context, b built, req Request, stdout, stderr io.Writer) Done {
	l, runDir, buildErr := b.l, b.runDir, b.err
	if buildErr != nil {
		if req.Op == "down" {
			return Done{}
		}
		return Done{Code: 1, Error: buildErr.Error()}
	}
	switch req.Op {
	case "status":
		st, err := lab.Inspect(runDir, l.Name)
		if err != nil {
			return Done{Code: 1, Error: err.Error()}
		}
		st.State.Runner = kernel.VM // the guest's lab is native to it, not to the host
		return Done{Status: st}
	case "exec":
		b := l.Box(req.Box)
		if b == nil || len(req.Argv) == 0 {
			return Done{Code: 2, Error: fmt.Sprintf("no box %q in lab %q, or no command", req.Box, l.Name)}
		}
		code, err := b.Run(ctx, req.Argv, stdout, stderr)
		if err != nil {
			return Done{Code: 127, Error: err.Error()}
		}
		return Done{Code: code}
	case "down":
		if err := l.Close(); err != nil {
			return Done{Code: 1, Error: err.Error()}
		}
		return Done{}
	}
	return Done{Code: 2, Error: fmt.Sprintf("unknown op %q", req.Op)}
}

// Call sends req to the agent of the lab whose run directory is dir, on
// the first free port (waiting for one), and copies the command's output
// to stdout and stderr until the answer ends. Cancelling ctx (Ctrl-C)
// closes the connection: the agent ends the request.
func Call(ctx context.Context, dir string, req Request, stdout, stderr io.Writer) (Done, error) {
	var done Done
	lock, sock, err := takePort(ctx, dir)
	if err != nil {
		return done, err
	}
	defer lock.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return done, fmt.Errorf("reach the lab's VM agent at %s: %w", sock, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stopClose := context.AfterFunc(ctx, func() { c.Close() })
	defer stopClose()
	done, err = call(c, req, stdout, stderr)
	if ctx.Err() != nil {
		return done, fmt.Errorf("%s: %w", req.Op, context.Cause(ctx))
	}
	return done, err
}

// takePort locks a free agent port of the lab in dir: its lock file is
// held while the client uses the port.
func takePort(ctx context.Context, dir string) (*os.File, string, error) {
	for i := range kernel.AgentPorts {
		f, err := lab.TryLock(filepath.Join(dir, kernel.AgentSocket(i)+".lock"))
		if err != nil {
			return nil, "", fmt.Errorf("VM agent: %w", err)
		}
		if f != nil {
			return f, filepath.Join(dir, kernel.AgentSocket(i)), nil
		}
	}
	// every port busy: wait for one
	i := rand.IntN(kernel.AgentPorts)
	f, err := lab.LockFile(ctx, filepath.Join(dir, kernel.AgentSocket(i)+".lock"))
	if err != nil {
		return nil, "", fmt.Errorf("VM agent: every port busy: %w", err)
	}
	return f, filepath.Join(dir, kernel.AgentSocket(i)), nil
}

// call sends one request on c and reads its answer, skipping what comes
// before the agent's hello with the request's ID.
func call(c io.ReadWriter, req Request, stdout, stderr io.Writer) (Done, error) {
	var done Done
	if req.ID == "" {
		id := make([]byte, 8)
		crand.Read(id)
		req.ID = hex.EncodeToString(id)
	}
	data, _ := json.Marshal(req)
	if _, err := c.Write(append(data, '\n')); err != nil {
		return done, fmt.Errorf("send %s to the VM agent: %w", req.Op, err)
	}
	r := bufio.NewReader(c)
	ours := false
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return done, fmt.Errorf("read the VM agent's answer to %s: %w", req.Op, err)
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r, p); err != nil {
			return done, fmt.Errorf("read the VM agent's answer to %s: %w", req.Op, err)
		}
		switch {
		case hdr[0] == frameHello:
			ours = string(p) == req.ID
		case !ours && hdr[0] != frameDone:
			// the tail of an answer to a client that left
		case hdr[0] == frameStdout:
			stdout.Write(p)
		case hdr[0] == frameStderr:
			stderr.Write(p)
		case hdr[0] == frameDone && ours:
			if err := json.Unmarshal(p, &done); err != nil {
				return done, fmt.Errorf("VM agent answer: %w", err)
			}
			if done.Error != "" {
				return done, errors.New(done.Error)
			}
			return done, nil
		}
	}
}

// Dir is the run directory of the lab called name: its agent's sockets.
func Dir(runDir, name string) string { return filepath.Join(runDir, name) }

// UpOptions are the lab Up builds: Topo (whose YAML is TopoData), called
// Name under RunDir, with the agent's further flags AgentArgs
// (--no-services, --directors ...).
type UpOptions struct {
	Topo      *lab.Topology
	TopoData  []byte
	RunDir    string
	Name      string
	AgentArgs []string
}

// Up boots a micro-VM whose agent builds the lab o names, and waits for
// it to be up. On error nothing is left.
func Up(ctx context.Context, vm *kernel.MicroVM, o UpOptions) (_ *lab.Status, err error) {
	topo, topoData, runDir, name, agentArgs := o.Topo, o.TopoData, o.RunDir, o.Name, o.AgentArgs
	dir, err := lab.Claim(runDir, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lab.Sweep(runDir, name) // kills qemu (recorded in dir/pids)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "topology.yaml"), topoData, 0o644); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append([]string{self, "agent", "--lab", name, "-t", GuestTopology}, agentArgs...)
	spec := kernel.Spec{Argv: argv,
		Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=/root"}, Dir: "/"}
	proc, err := vm.Start(dir, spec)
	if err != nil {
		return nil, err
	}
	// Release sets proc.Pid to -1, and kill(-1, 0) succeeds while any
	// process lives: keep the pid first.
	pid := proc.Pid
	if err := lab.RecordPID(dir, "vm.qemu", pid); err != nil {
		proc.Kill()
		return nil, err
	}
	proc.Release()
	st := lab.State{Name: name, Topology: topo, PID: pid, Created: time.Now(), Runner: kernel.VM}
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), data, 0o644); err != nil {
		return nil, err
	}
	// qemu creates the socket as it starts; the agent answers once the
	// lab is built (under TCG: boot, namespaces, MariaDB: tens of seconds).
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		if _, err := os.Stat(filepath.Join(dir, kernel.AgentSocket(kernel.AgentPorts-1))); err == nil {
			break
		}
		if !lab.Alive(pid) {
			return nil, fmt.Errorf("qemu exited: %s", lab.LogTail(filepath.Join(dir, "qemu.log"), 8))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	s, err := Status(ctx, runDir, name)
	if err != nil {
		return nil, fmt.Errorf("lab in VM: %w (agent log: %s)", err, lab.LogTail(filepath.Join(dir, "stderr.log"), 8))
	}
	return s, nil
}

// Status asks the agent of the lab called name what the kernel inside the
// VM shows; it waits while the agent still builds the lab.
func Status(ctx context.Context, runDir, name string) (*lab.Status, error) {
	done, err := Call(ctx, Dir(runDir, name), Request{Op: "status"}, io.Discard, io.Discard)
	return done.Status, err
}

// Down asks the agent to tear the lab down, waits for the VM to power off
// (killing it after grace), removes the run directory, and says what
// happened. A VM gone and swept is down, even if the agent's answer was
// lost: that is reported, not failed.
func Down(runDir string, st *lab.State, grace time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
	defer cancel()
	t0 := time.Now()
	_, callErr := Call(ctx, Dir(runDir, st.Name), Request{Op: "down"}, io.Discard, io.Discard)
	off := false
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !lab.Alive(st.PID) {
			off = true
			break
		}
	}
	agent := "the agent tore the lab down"
	if callErr != nil {
		agent = fmt.Sprintf("the agent's answer was lost (%v)", callErr)
	}
	what := fmt.Sprintf("%s, the VM powered off in %.1fs", agent, time.Since(t0).Seconds())
	if !off {
		what = fmt.Sprintf("%s, the VM did not power off within %s: killed", agent, grace)
	}
	if _, err := lab.Sweep(runDir, st.Name); err != nil {
		return what, err
	}
	return what + ", run dir removed", nil
}
