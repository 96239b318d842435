// Package vmlab keeps a lab in a background micro-VM, for hosts whose
// kernel has no IPVS. `lvslab up` boots the VM with `lvslab agent` as its
// command; the agent builds the lab inside and serves requests (status,
// exec, down) on a virtio-serial port that the host sees as the unix socket
// <run dir>/agent.sock. One request at a time; exec has no stdin.
//
// Wire format: the host writes one JSON Request line; the agent answers
// with frames of [kind byte][length uint32, big endian][payload]: 'o' and
// 'e' carry the command's stdout and stderr, 'x' ends the answer with a
// JSON Done.
package vmlab

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab"
	"github.com/lvslab/lvslab/lab/kernel"
)

// Request is what the host asks of the agent.
type Request struct {
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
	frameStdout = 'o'
	frameStderr = 'e'
	frameDone   = 'x'
)

// GuestTopology is where the agent finds the topology: the run directory
// is the VM's control share.
var GuestTopology = filepath.Join(kernel.GuestCtl, "topology.yaml")

// frameWriter writes frames of one kind; writers share a mutex.
type frameWriter struct {
	mu   *sync.Mutex
	w    io.Writer
	kind byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writeFrame(f.w, f.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func writeFrame(w io.Writer, kind byte, p []byte) error {
	hdr := [5]byte{kind}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// Serve is the agent: it answers requests on port until a down request has
// closed the lab. buildErr, if set, is what status reports.
func Serve(ctx context.Context, l *lab.Lab, runDir string, buildErr error, port io.ReadWriter) error {
	r := bufio.NewReader(port)
	var mu sync.Mutex
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			// No host connected: the port reads as EOF. Wait for one.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var req Request
		done := Done{}
		if err := json.Unmarshal(line, &req); err != nil {
			done.Code, done.Error = 2, "bad request: "+err.Error()
		} else {
			done = handle(ctx, l, runDir, buildErr, req, &frameWriter{&mu, port, frameStdout}, &frameWriter{&mu, port, frameStderr})
		}
		data, _ := json.Marshal(done)
		mu.Lock()
		writeFrame(port, frameDone, data) // a host gone mid-answer is no error
		mu.Unlock()
		if req.Op == "down" {
			return nil
		}
	}
}

func handle(ctx context.Context, l *lab.Lab, runDir string, buildErr error, req Request, stdout, stderr io.Writer) Done {
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

// Call sends req to the agent behind sock and copies the command's output
// to stdout and stderr until the answer ends.
func Call(ctx context.Context, sock string, req Request, stdout, stderr io.Writer) (Done, error) {
	var done Done
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return done, fmt.Errorf("reach the lab's VM agent at %s: %w", sock, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return call(c, req, stdout, stderr)
}

// call sends one request on c and reads its answer.
func call(c io.ReadWriter, req Request, stdout, stderr io.Writer) (Done, error) {
	var done Done
	data, _ := json.Marshal(req)
	if _, err := c.Write(append(data, '\n')); err != nil {
		return done, fmt.Errorf("send %s to the VM agent: %w", req.Op, err)
	}
	r := bufio.NewReader(c)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return done, fmt.Errorf("read the VM agent's answer to %s: %w", req.Op, err)
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r, p); err != nil {
			return done, fmt.Errorf("read the VM agent's answer to %s: %w", req.Op, err)
		}
		switch hdr[0] {
		case frameStdout:
			stdout.Write(p)
		case frameStderr:
			stderr.Write(p)
		case frameDone:
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

// Socket is the agent socket of the lab called name.
func Socket(runDir, name string) string { return filepath.Join(runDir, name, kernel.AgentSocket) }

// Up boots a micro-VM whose agent builds topo (whose YAML is topoData) as
// the lab called name, with the agent's further flags agentArgs
// (--no-services, --directors ...), and waits for the lab to be up. On
// error nothing is left.
func Up(ctx context.Context, vm *kernel.MicroVM, topo *lab.Topology, topoData []byte, runDir, name string, agentArgs []string) (_ *lab.Status, err error) {
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
	if err := lab.RecordPID(dir, "vm.qemu", proc.Pid); err != nil {
		proc.Kill()
		return nil, err
	}
	proc.Release()
	st := lab.State{Name: name, Topology: topo, PID: proc.Pid, Created: time.Now(), Runner: kernel.VM}
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), data, 0o644); err != nil {
		return nil, err
	}
	// qemu creates the socket as it starts; the agent answers once the
	// lab is built (under TCG: boot, namespaces, MariaDB: tens of seconds).
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		if _, err := os.Stat(Socket(runDir, name)); err == nil {
			break
		}
		if syscall.Kill(proc.Pid, 0) != nil {
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
	done, err := Call(ctx, Socket(runDir, name), Request{Op: "status"}, io.Discard, io.Discard)
	return done.Status, err
}

// Down asks the agent to tear the lab down, waits for the VM to power off
// (killing it after grace), and removes the run directory.
func Down(runDir string, st *lab.State, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
	defer cancel()
	_, callErr := Call(ctx, Socket(runDir, st.Name), Request{Op: "down"}, io.Discard, io.Discard)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(st.PID, 0) != nil {
			break
		}
	}
	_, err := lab.Sweep(runDir, st.Name)
	return errors.Join(callErr, err)
}
