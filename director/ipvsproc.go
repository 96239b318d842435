package director

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"

	"github.com/moby/ipvs"
)

// Kernel is kernel IPVS in the network namespace of the thread that opened
// it: moby/ipvs's netlink handle for changes, and /proc/net/ip_vs for
// reading the table. A netlink dump lists one service's destinations at a
// time, so checking 1000 services takes 1001 dumps (0.5 s under TCG); the
// proc file lists every service with its destinations in one read.
type Kernel struct {
	*ipvs.Handle
	mu   sync.Mutex
	proc *os.File // bound to the namespace it was opened in
	buf  bytes.Buffer
	hz   uint32 // jiffies per second, learned from the first persistent service
}

var _ TableReader = (*Kernel)(nil)

// OpenKernel opens kernel IPVS in the calling thread's network namespace
// (lock the thread, as lab.Box.Do does, to open another namespace's).
func OpenKernel() (*Kernel, error) {
	f, err := os.Open("/proc/thread-self/net/ip_vs")
	if err != nil {
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	h, err := ipvs.New("")
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	return &Kernel{Handle: h, proc: f}, nil
}

// Close closes the netlink handle and the proc file.
func (k *Kernel) Close() {
	k.Handle.Close()
	k.proc.Close()
}

// Table reads the whole table from one read of /proc/net/ip_vs. The file
// prints the persistence timeout in jiffies (300 s reads 75000 on a HZ=250
// kernel); the first time it shows a persistent service, one netlink dump
// gives the same timeout in seconds, hence HZ for the life of the boot.
func (k *Kernel) Table() ([]Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.buf.Reset()
	if _, err := k.proc.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read IPVS table: %w", err)
	}
	if _, err := k.buf.ReadFrom(k.proc); err != nil {
		return nil, fmt.Errorf("read IPVS table: %w", err)
	}
	table, err := parseProcTable(k.buf.Bytes())
	if err != nil {
		return nil, err
	}
	for i := range table {
		s := &table[i]
		if s.Persistence == 0 {
			continue
		}
		if k.hz == 0 {
			if err := k.learnHZ(*s); err != nil {
				return nil, err
			}
		}
		s.Persistence /= k.hz
	}
	return table, nil
}

// learnHZ compares persistent service s's timeout in jiffies with the
// kernel's netlink answer in seconds.
func (k *Kernel) learnHZ(s Service) error {
	ks, err := k.GetService(s.kernel())
	if err != nil || ks.Timeout == 0 {
		return fmt.Errorf("read IPVS service %s for its timeout: %v", s.Key(), err)
	}
	k.hz = s.Persistence / ks.Timeout
	return nil
}

// parseProcTable reads the format of /proc/net/ip_vs (ip_vs_info_seq_show
// in net/netfilter/ipvs/ip_vs_ctl.c): three header lines, then per service
//
//	TCP  C0A801C8:0CEA rr [ops ][persistent 75000 FFFFFFFF]
//	FWM  00000003 rr [ops ][persistent 75000 FFFFFFFF]
//	  -> C0A801E9:0CEA      Route   1      0          0
//
// in host byte order hex, IPv6 addresses in brackets. Persistence is left
// in the file's unit, jiffies. It allocates little: 1000 services are read
// at every no-op reconcile.
func parseProcTable(text []byte) ([]Service, error) {
	var out []Service
	var f [8][]byte
	names := map[string]string{} // schedulers and forwarding methods, shared
	intern := func(b []byte) string {
		s, ok := names[string(b)]
		if !ok {
			s = string(b)
			names[s] = s
		}
		return s
	}
	for n := 1; len(text) > 0; n++ {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		nf := fields(line, &f)
		if n <= 3 || nf == 0 {
			continue
		}
		var err error
		if string(f[0]) == "->" {
			if len(out) == 0 {
				err = fmt.Errorf("destination before any service")
			} else {
				err = out[len(out)-1].parseDest(f[:nf], intern)
			}
		} else {
			var s Service
			s, err = parseProcService(f[:nf], intern)
			out = append(out, s)
		}
		if err != nil {
			return nil, fmt.Errorf("/proc/net/ip_vs line %d %q: %w", n, line, err)
		}
	}
	return out, nil
}

// fields splits line at spaces into f, up to len(f) fields, and returns
// how many it found.
func fields(line []byte, f *[8][]byte) int {
	n := 0
	for n < len(f) {
		line = bytes.TrimLeft(line, " ")
		if len(line) == 0 {
			break
		}
		end := bytes.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		f[n], line = line[:end], line[end:]
		n++
	}
	return n
}

func parseProcService(f [][]byte, intern func([]byte) string) (Service, error) {
	if len(f) < 3 {
		return Service{}, fmt.Errorf("short service line")
	}
	s := Service{Scheduler: intern(f[2])}
	var err error
	if string(f[0]) == "FWM" {
		var m uint64
		m, err = strconv.ParseUint(string(f[1]), 16, 32)
		s.Mark = uint32(m)
	} else {
		s.Protocol = intern(bytes.ToLower(f[0]))
		var ap netip.AddrPort
		ap, err = parseProcAddrPort(f[1])
		s.VIP, s.Port = ap.Addr(), ap.Port()
	}
	if err != nil {
		return s, err
	}
	rest := f[3:]
	if len(rest) > 0 && string(rest[0]) == "ops" {
		rest = rest[1:]
	}
	if len(rest) >= 2 && string(rest[0]) == "persistent" {
		t, err := strconv.ParseUint(string(rest[1]), 10, 32)
		if err != nil {
			return s, fmt.Errorf("persistent timeout: %w", err)
		}
		s.Persistence = uint32(t)
	}
	return s, nil
}

func (s *Service) parseDest(f [][]byte, intern func([]byte) string) error {
	if len(f) < 4 {
		return fmt.Errorf("short destination line")
	}
	ap, err := parseProcAddrPort(f[1])
	if err != nil {
		return err
	}
	w, err := strconv.Atoi(string(f[3]))
	if err != nil {
		return fmt.Errorf("weight: %w", err)
	}
	s.Dests = append(s.Dests, Dest{Addr: ap.Addr(), Port: ap.Port(), Weight: w, Forward: intern(f[2])})
	return nil
}

// parseProcAddrPort reads "C0A801C8:0CEA" or "[2001:db8::1]:0CEA".
func parseProcAddrPort(b []byte) (netip.AddrPort, error) {
	i := bytes.LastIndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", b)
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port of %q: %w", b, err)
	}
	var a netip.Addr
	if b[0] == '[' {
		a, err = netip.ParseAddr(string(bytes.Trim(b[:i], "[]")))
	} else {
		var v uint64
		v, err = strconv.ParseUint(string(b[:i]), 16, 32)
		a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", b, err)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
