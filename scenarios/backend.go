package scenarios

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lvslab/lvslab/lab"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/ipv4"
)

// Backend kinds: what serves the virtual service's port on each box.
const (
	BackendMySQL  = "mysql"  // the lab's MariaDB
	BackendHTTP   = "http"   // built in: an HTTP 200 page "server_id N"
	BackendBanner = "banner" // built in: a line "server_id N", then close
	// BackendHTTPS is the HTTP page over TLS, with a certificate the
	// backend makes itself when it starts.
	BackendHTTPS = "https"
	// BackendUDP answers each datagram with a datagram "server_id N" (a
	// DNS query, DNS_CHECK's, with a DNS answer), and is the banner on TCP
	// on the same port (a TCP_CHECK's, or a TCP service's on that port).
	BackendUDP = "udp"
	// BackendSMTP greets "220 server_id N ESMTP" and answers HELO or
	// EHLO with 250 and QUIT with 221: what keepalived's SMTP_CHECK asks.
	BackendSMTP = "smtp"
)

// BackendKinds are the built-in backends.
var BackendKinds = []string{BackendHTTP, BackendHTTPS, BackendBanner, BackendUDP, BackendSMTP}

// Service is a virtual service: the one a scenario's workload goes to,
// or another its boxes serve.
type Service struct {
	// Name is how a user's config declares it ("TCP 192.168.1.200:3306",
	// "FWM 3"); "" for the lab's own.
	Name    string
	VIP     netip.Addr // the zero Addr: the topology's VIP
	Port    int
	Backend string // BackendMySQL (the default), or one of BackendKinds
	// Master is the director VRRP makes MASTER of the VIP ("": the
	// topology's first): in an active-active pair, each is of some.
	Master string
}

// backend is a built-in server on one box: its listening socket is in the
// box's namespace, served by goroutines of this process.
type backend struct {
	kind     string
	serverID int
	ln       net.Listener
	pc       net.PacketConn // BackendUDP's
	srv      *http.Server   // nil for a banner
	wg       sync.WaitGroup
}

// startBackend serves port on box, saying serverID to every client.
func startBackend(box *lab.Box, kind string, port, serverID int) (*backend, error) {
	var ln net.Listener
	var pc net.PacketConn
	err := box.Do(func() (err error) {
		ln, pc, err = listenBackend(kind, port)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s backend on %s:%d: %w", kind, box.Name, port, err)
	}
	return serveBackend(ln, pc, kind, serverID), nil
}

// listenBackend opens kind's sockets on port: TCP, and UDP for BackendUDP.
func listenBackend(kind string, port int) (net.Listener, net.PacketConn, error) {
	ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
	if err != nil || kind != BackendUDP {
		return ln, nil, err
	}
	pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
	if err != nil {
		ln.Close()
	}
	return ln, pc, err
}

// ServeBackend is a built-in backend of kind on port, in the calling
// thread's namespace, until ctx ends: what `lvslab backend` runs in a box
// of a lab left up (lvslab check --keep).
func ServeBackend(ctx context.Context, kind string, port, serverID int) error {
	ln, pc, err := listenBackend(kind, port)
	if err != nil {
		return err
	}
	b := serveBackend(ln, pc, kind, serverID)
	<-ctx.Done()
	b.stop()
	return nil
}

// BackendAnswer is what a built-in backend answers: its page, or its
// banner.
func BackendAnswer(serverID int) string { return fmt.Sprintf("server_id %d\n", serverID) }

// serveBackend answers every connection to ln, and every datagram to pc
// if not nil, with serverID, as kind.
func serveBackend(ln net.Listener, pc net.PacketConn, kind string, serverID int) *backend {
	b := &backend{kind: kind, serverID: serverID, ln: ln, pc: pc}
	answer := BackendAnswer(serverID)
	if pc != nil {
		// The answer leaves from the address the datagram came to (the
		// VIP): the kernel would pick the interface's own, and the
		// client's connected socket drops what the VIP did not send.
		p := ipv4.NewPacketConn(pc)
		p.SetControlMessage(ipv4.FlagDst, true) // Linux has IP_PKTINFO; a failure shows as answers from the wrong address
		b.wg.Go(func() {
			buf := make([]byte, 512)
			for {
				n, cm, from, err := p.ReadFrom(buf)
				if err != nil {
					return // stopped
				}
				var reply *ipv4.ControlMessage
				if cm != nil {
					reply = &ipv4.ControlMessage{Src: cm.Dst}
				}
				out := []byte(answer)
				if dns, ok := dnsAnswer(buf[:n]); ok { // a DNS_CHECK's query
					out = dns
				}
				p.WriteTo(out, reply, from)
			}
		})
	}
	if kind == BackendHTTP || kind == BackendHTTPS {
		b.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, answer) })}
		b.srv.SetKeepAlivesEnabled(false)
		if kind == BackendHTTPS {
			b.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{labCert()}}
			b.ln = tls.NewListener(ln, b.srv.TLSConfig)
		}
		b.wg.Go(func() { b.srv.Serve(b.ln) })
		return b
	}
	b.wg.Go(func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return // stopped
			}
			if kind == BackendSMTP {
				go smtpSession(c, serverID)
				continue
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, answer)
			c.Close()
		}
	})
	return b
}

// smtpSession is the SMTP conversation keepalived's SMTP_CHECK has (a
// greeting, HELO, QUIT, each answer's status its first three digits)
// and the workload's first line: a greeting that names the server.
func smtpSession(c net.Conn, serverID int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "220 server_id %d ESMTP lvslab\r\n", serverID)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " "); cmd {
		case "HELO", "EHLO":
			io.WriteString(c, "250 lvslab\r\n")
		case "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

// stop closes the listener: the box's realserver is down.
func (b *backend) stop() {
	if b.pc != nil {
		b.pc.Close()
	}
	if b.srv != nil {
		b.srv.Close()
	} else {
		b.ln.Close()
	}
	b.wg.Wait()
}

// ask is one client request to a built-in backend through addr, dialled
// by dialer (the client box's): which server_id answered.
func ask(ctx context.Context, dialer func(ctx context.Context, network, addr string) (net.Conn, error), kind, addr string, dial, timeout time.Duration) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, dial)
	defer cancel()
	network := "tcp"
	if kind == BackendUDP {
		network = "udp"
	}
	c, err := dialer(dctx, network, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if kind == BackendUDP {
		if _, err := io.WriteString(c, "server_id?\n"); err != nil {
			return 0, err
		}
	}
	if kind == BackendHTTPS {
		// The lab's own certificate, made by the backend: the answer's
		// server_id says who served, not the certificate.
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // see above
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, err
		}
		c = tc
	}
	r := bufio.NewReader(c)
	if kind == BackendHTTP || kind == BackendHTTPS {
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		r = bufio.NewReader(resp.Body)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if kind == BackendSMTP { // "220 server_id N ESMTP lvslab"
		line = strings.TrimPrefix(line, "220 ")
		line, _, _ = strings.Cut(line, " ESMTP")
		io.WriteString(c, "QUIT\r\n")
	}
	id, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "server_id "))
	if err != nil {
		return 0, fmt.Errorf("backend answered %q", line)
	}
	return id, nil
}

// backendKey names the built-in backend on node's port.
type backendKey struct {
	node string
	port int
}

// labCert is the built-in HTTPS backend's certificate: self-signed, made
// once per process (a P-256 key is quick), for no name in particular.
var labCert = sync.OnceValue(func() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lvslab backend"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err) // a fixed, valid template
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
})

// dnsAnswer is the answer to q when q is a DNS query, as keepalived's
// DNS_CHECK sends (type SOA of "." unless its config says otherwise): the
// question back with one record of its type where there is one to make
// (A: 127.0.0.1; SOA: a zone of its own), NOERROR.
func dnsAnswer(q []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, false
	}
	question, err := p.Question()
	if err != nil {
		return nil, false
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	if b.StartQuestions() != nil || b.Question(question) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	rh := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET}
	switch question.Type {
	case dnsmessage.TypeA:
		err = b.AResource(rh, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
	case dnsmessage.TypeSOA:
		err = b.SOAResource(rh, dnsmessage.SOAResource{NS: question.Name, MBox: question.Name, Serial: 1, Refresh: 60, Retry: 60, Expire: 60, MinTTL: 60})
	}
	if err != nil {
		return nil, false
	}
	out, err := b.Finish()
	return out, err == nil
}
