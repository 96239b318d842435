package vmlab

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCallServeFailedBuild runs the agent protocol over an in-memory pipe
// with an agent whose build failed: every request but down reports the
// build error with code 1, and down ends the agent.
func TestCallServeFailedBuild(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	host.SetDeadline(time.Now().Add(10 * time.Second))
	served := make(chan error, 1)
	go func() {
		served <- Serve(context.Background(), nil, "", errors.New("mariadbd in d1 not ready"), guest)
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
	if done := handle(context.Background(), nil, "", nil, Request{Op: "bogus"}, nil, nil); done.Code != 2 || !strings.Contains(done.Error, `unknown op "bogus"`) {
		t.Errorf("got %+v, want code 2 naming the op", done)
	}
}
