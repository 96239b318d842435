package vmlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCallServeFailedBuild runs the agent protocol over an in-memory pipe
// with an agent whose build failed: every request but down reports the
// build error with code 1, and down ends the agent.
func TestCallServeFailedBuild(t *testing.T) {
	p := newPort()
	host := p.connect()
	defer host.Close()
	host.SetDeadline(time.Now().Add(10 * time.Second))
	served := make(chan error, 1)
	go func() {
		served <- Serve(context.Background(), nil, "", errors.New("mariadbd in d1 not ready"), p)
	}()
	var out, errb bytes.Buffer
	for _, op := range []string{"status", "exec"} {
		done, err := call(host, Request{Op: op, Box: "d1", Argv: []string{"true"}}, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "not ready") || done.Code != 1 {
			t.Errorf("%s: got code %d, err %v; want code 1 and the build error", op, done.Code, err)
		}
	}
	if _, err := call(host, Request{Op: "down"}, &out, &errb); err != nil {
		t.Errorf("down: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("agent: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("agent still serving after down")
	}
}

func TestHandleUnknownOp(t *testing.T) {
	if done := handle(context.Background(), built{}, Request{Op: "bogus"}, nil, nil); done.Code != 2 || !strings.Contains(done.Error, `unknown op "bogus"`) {
		t.Errorf("got %+v, want code 2 naming the op", done)
	}
}

// port behaves as a guest's virtio-serial port: it reads as EOF while no
// host is connected, and a write then blocks until a host connects or the
// write deadline passes. connect hands it the guest end of a new client's
// connection; lateClose makes it read as EOF once while its client stays,
// as when the guest learns late of the last client's close.
type port struct {
	mu       sync.Mutex
	cur      net.Conn
	conns    chan net.Conn
	deadline time.Time
	late     bool
}

func (p *port) lateClose() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.late = true
	p.cur.SetReadDeadline(time.Now()) // the read in progress ends
}

func (p *port) HostConnected() bool { return p.conn() != nil }

func newPort() *port { return &port{conns: make(chan net.Conn, 4)} }

func (p *port) connect() net.Conn {
	host, guest := net.Pipe()
	p.conns <- guest
	return host
}

func (p *port) conn() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		select {
		case p.cur = <-p.conns:
		default:
		}
	}
	return p.cur
}

func (p *port) drop(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == c {
		p.cur = nil
	}
}

func (p *port) Read(b []byte) (int, error) {
	c := p.conn()
	if c == nil {
		return 0, io.EOF
	}
	n, err := c.Read(b)
	if err != nil {
		p.mu.Lock()
		late := p.late
		p.late = false
		p.mu.Unlock()
		if late { // EOF, the client still there
			c.SetReadDeadline(time.Time{})
			return n, io.EOF
		}
		p.drop(c)
		return n, io.EOF
	}
	return n, nil
}

func (p *port) Write(b []byte) (int, error) {
	for {
		p.mu.Lock()
		dl := p.deadline
		p.mu.Unlock()
		if !dl.IsZero() && time.Now().After(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		if c := p.conn(); c != nil {
			c.SetWriteDeadline(dl)
			n, err := c.Write(b)
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return n, err
			}
			p.drop(c) // the host left: block as the kernel does
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *port) SetWriteDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	c := p.cur
	p.mu.Unlock()
	if c != nil {
		c.SetWriteDeadline(t)
	}
	return nil
}

// streamer answers "stream" with a line every 10 ms until its context
// ends (a watch), and anything else with its op as output.
func streamer(ended chan<- string) handler {
	return func(ctx context.Context, req Request, stdout, stderr io.Writer) Done {
		if req.Op != "stream" {
			fmt.Fprintf(stdout, "answer to %s\n", req.Op)
			return Done{}
		}
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				ended <- req.ID
				return Done{}
			case <-time.After(10 * time.Millisecond):
				fmt.Fprintf(stdout, "watch line %d\n", i)
			}
		}
	}
}

// A client that leaves mid-stream (Ctrl-C, a kill, a closed pipe: its
// connection closes) ends its own request; the next client of that port
// gets its own answer and nothing of the stream; a stream on one port
// does not hold up another port's requests.
func TestServeClientLeaves(t *testing.T) {
	p0, p1 := newPort(), newPort()
	ended := make(chan string, 4)
	go serve(t.Context(), streamer(ended), p0, p1)

	watch := p0.connect()
	watch.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := json.Marshal(Request{ID: "w1", Op: "stream"})
	watch.Write(append(req, '\n'))
	r := bufio.NewReader(watch)
	for range 3 { // hello, then watch lines
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("stream: %v", err)
		}
		io.ReadFull(r, make([]byte, binary.BigEndian.Uint32(hdr[1:])))
	}
	// beside the stream, another port answers
	other := p1.connect()
	other.SetDeadline(time.Now().Add(10 * time.Second))
	var out bytes.Buffer
	if _, err := call(other, Request{Op: "status"}, &out, io.Discard); err != nil || out.String() != "answer to status\n" {
		t.Errorf("port 1 beside a stream on port 0: %q, %v", out.String(), err)
	}
	watch.Close() // the watch's client goes away
	select {
	case id := <-ended:
		if id != "w1" {
			t.Errorf("ended request %q, want w1", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream went on after its client left")
	}
	next := p0.connect()
	next.SetDeadline(time.Now().Add(10 * time.Second))
	out.Reset()
	if _, err := call(next, Request{Op: "exec"}, &out, io.Discard); err != nil || out.String() != "answer to exec\n" {
		t.Errorf("the port's next client: %q, %v; want its own answer only", out.String(), err)
	}
}

// A client that never read its answer's start: frames before its hello
// (another request's tail) are skipped.
func TestCallSkipsStaleFrames(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	host.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		line, _ := bufio.NewReader(guest).ReadBytes('\n')
		var req Request
		json.Unmarshal(line, &req)
		writeFrame(guest, frameStdout, []byte("stale watch line\n"))
		writeFrame(guest, frameDone, []byte(`{"code":0}`))
		writeFrame(guest, frameHello, []byte(req.ID))
		writeFrame(guest, frameStdout, []byte("mine\n"))
		writeFrame(guest, frameDone, []byte(`{"code":3}`))
	}()
	var out bytes.Buffer
	done, err := call(host, Request{Op: "exec"}, &out, io.Discard)
	if err != nil || done.Code != 3 || out.String() != "mine\n" {
		t.Errorf("got %q, code %d, %v; want only its own answer, code 3", out.String(), done.Code, err)
	}
}

// The guest may read a client's request before the close of the port's
// last client: that late hang-up must not end the request of the client
// that is still there. (In the VM, watches and execs one after another on
// a port, as TestUpInVM does, hung 5 times in 31 rounds of 5 watches and 4
// execs: the guest had ended the request of a client still waiting.)
func TestServeLateHangup(t *testing.T) {
	p := newPort()
	ended := make(chan string, 4)
	go serve(t.Context(), streamer(ended), p)

	watch := p.connect()
	watch.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := json.Marshal(Request{ID: "w1", Op: "stream"})
	watch.Write(append(req, '\n'))
	r := bufio.NewReader(watch)
	frames := func(n int) {
		t.Helper()
		for range n {
			var hdr [5]byte
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				t.Fatalf("stream: %v", err)
			}
			io.ReadFull(r, make([]byte, binary.BigEndian.Uint32(hdr[1:])))
		}
	}
	frames(3) // hello, then watch lines
	p.lateClose()
	frames(int(2 * hangupGrace / (10 * time.Millisecond))) // the stream goes on past the grace
	select {
	case id := <-ended:
		t.Fatalf("a late hang-up ended request %s, whose client is still there", id)
	default:
	}
	watch.Close()
	select {
	case <-ended:
	case <-time.After(hangupGrace + 5*time.Second):
		t.Fatal("the stream went on after its client left")
	}
}
