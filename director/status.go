package director

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/ipvs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the director's state as `lvslab director status` shows it.
type Status struct {
	VRID      int       `json:"vrid"`
	Interface string    `json:"interface"`
	Address   string    `json:"address"`
	State     string    `json:"state"`
	Priority  int       `json:"priority"`
	Since     time.Time `json:"since"` // of the last state change
	// Transitions counts state changes since start.
	Transitions int `json:"transitions"`
	// Master is the router whose adverts a BACKUP last heard.
	Master      string          `json:"master,omitempty"`
	Guard       GuardStatus     `json:"guard"`
	SyncDaemons []string        `json:"sync_daemons,omitempty"`
	Services    []ServiceStatus `json:"services"`
}

// GuardStatus is the loop guard in force.
type GuardStatus struct {
	Mode    string `json:"mode"`
	PeerMAC string `json:"peer_mac,omitempty"`
	// PeerMACFrom: "config", "adverts", "neighbour", or "" while unknown.
	PeerMACFrom string `json:"peer_mac_from,omitempty"`
	// Rule is the fwmark rule installed now; empty for none. Redirects
	// are the peer REDIRECTs beside it (guard.redirect_peer).
	Rule      string   `json:"rule,omitempty"`
	Redirects []string `json:"redirects,omitempty"`
}

// ServiceStatus is one virtual service with the kernel's counters.
type ServiceStatus struct {
	Service     string             `json:"service"` // "FWM 3", "TCP 192.168.1.200:3306"
	Scheduler   string             `json:"scheduler"`
	Conns       uint64             `json:"conns"`
	InPkts      uint64             `json:"in_pkts"`
	OutPkts     uint64             `json:"out_pkts"`
	InBytes     uint64             `json:"in_bytes"`
	OutBytes    uint64             `json:"out_bytes"`
	Realservers []RealserverStatus `json:"realservers"`
}

// RealserverStatus is one realserver: configured, checked, and as the
// kernel has it (absent when removed by its check).
type RealserverStatus struct {
	Address       string `json:"address"` // host:port
	InKernel      bool   `json:"in_kernel"`
	Weight        int    `json:"weight"`
	Up            bool   `json:"up"`
	Check         string `json:"check"` // "ok" or the last failure
	ActiveConns   int    `json:"active_conns"`
	InactiveConns int    `json:"inactive_conns"`
	Conns         uint64 `json:"conns"`
	InPkts        uint64 `json:"in_pkts"`
}

// snapshot is the loop's part of a Status: VRRP state, peer, and each
// realserver's health. It runs in the loop, which owns that state, and
// reads nothing from the kernel.
func (d *Daemon) snapshot() Status {
	st := Status{VRID: d.cfg.VRRP.VRID, Interface: d.cfg.VRRP.Interface, Address: d.addr.String(),
		State: d.fsm.State().String(), Priority: int(d.fsm.Priority), Since: d.since, Transitions: d.transitions,
		Guard: GuardStatus{Mode: d.cfg.Guard.Mode}}
	if d.master.IsValid() && d.fsm.State() == Backup {
		st.Master = d.master.String()
	}
	if d.peerMAC != nil {
		st.Guard.PeerMAC, st.Guard.PeerMACFrom = d.peerMAC.String(), d.peerFrom
	}
	for i, want := range d.cfg.Desired() {
		ss := ServiceStatus{Service: want.Key(), Scheduler: want.Scheduler}
		for j, rs := range want.Dests {
			// A fwmark service's destinations carry the realserver's port as
			// configured (the kernel keeps it).
			ss.Realservers = append(ss.Realservers, RealserverStatus{Address: netip.AddrPortFrom(rs.Addr, rs.Port).String(),
				Up: d.health[[2]int{i, j}].Up(), Check: d.lastCheck[[2]int{i, j}]})
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// kernelStatus adds the kernel's side to a snapshot: the guard rule in
// force, the sync daemons, and the IPVS counters, read with the status
// handle outside the loop.
func (d *Daemon) kernelStatus(st *Status) {
	d.guardMu.Lock()
	st.Guard.Rule, st.Guard.Redirects = d.guardRule, slices.Clone(d.guardRedirects)
	d.guardMu.Unlock()
	if ds, err := SyncDaemons(); err == nil {
		for _, sd := range ds {
			st.SyncDaemons = append(st.SyncDaemons, sd.String())
		}
	}
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	kernel := map[string]*ipvs.Service{}
	if svcs, err := d.stats.GetServices(); err == nil {
		for _, s := range svcs {
			kernel[FromKernel(s).Key()] = s
		}
	}
	for i := range st.Services {
		ss := &st.Services[i]
		ks := kernel[ss.Service]
		if ks == nil {
			continue
		}
		ss.Conns, ss.InPkts, ss.OutPkts = uint64(ks.Stats.Connections), uint64(ks.Stats.PacketsIn), uint64(ks.Stats.PacketsOut)
		ss.InBytes, ss.OutBytes = ks.Stats.BytesIn, ks.Stats.BytesOut
		ds, err := d.stats.GetDestinations(ks)
		if err != nil {
			continue
		}
		dests := map[string]*ipvs.Destination{}
		for _, kd := range ds {
			dests[destAddrPort(kd).String()] = kd
		}
		for j := range ss.Realservers {
			r := &ss.Realservers[j]
			if kd := dests[r.Address]; kd != nil {
				r.InKernel, r.Weight = true, kd.Weight
				r.ActiveConns, r.InactiveConns = kd.ActiveConnections, kd.InactiveConnections
				r.Conns, r.InPkts = uint64(kd.Stats.Connections), uint64(kd.Stats.PacketsIn)
			}
		}
	}
}

// statusServer answers on the status socket and, if configured, serves
// Prometheus metrics on a loopback address. Each answer is a fresh Status:
// the loop's snapshot and the kernel's counters.
type statusServer struct {
	servers []*http.Server
	socket  string
	madeDir bool // the socket's directory was made for it
}

// serveStatus starts the servers; ask gets a fresh Status.
func serveStatus(cfg StatusConfig, ask func(context.Context) (Status, error)) (*statusServer, error) {
	s := &statusServer{socket: cfg.Socket}
	// Checked again at start: the path may have changed since the config
	// was read. Only a socket (a crashed run's) is replaced.
	if err := checkSocketPath(cfg.Socket); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	dir := filepath.Dir(cfg.Socket)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("status socket: %w", err)
		}
		s.madeDir = true
	}
	os.Remove(cfg.Socket)
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := ask(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	s.start(&http.Server{Handler: mux}, ln)
	if cfg.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metricsCollector{ask})
		mln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		s.start(&http.Server{Handler: mm}, mln)
	}
	return s, nil
}

func (s *statusServer) start(srv *http.Server, ln net.Listener) {
	srv.ReadHeaderTimeout = 5 * time.Second
	s.servers = append(s.servers, srv)
	go srv.Serve(ln)
}

// Close stops the servers and removes the socket.
func (s *statusServer) Close() error {
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Close())
	}
	if fi, err := os.Lstat(s.socket); err == nil && fi.Mode().Type() == os.ModeSocket {
		errs = append(errs, os.Remove(s.socket))
	}
	if s.madeDir {
		os.Remove(filepath.Dir(s.socket)) // fails, and stays, if anything else is there now
	}
	return errors.Join(errs...)
}

// ReadStatus asks a running director over its status socket.
func ReadStatus(ctx context.Context, socket string) (Status, error) {
	var st Status
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://director/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return st, fmt.Errorf("status socket %s: %w (is the director running?)", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return st, fmt.Errorf("status: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WriteText prints a Status for people.
func (st Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "vrrp: vrid %d on %s (%s), %s priority %d since %s, %d transitions",
		st.VRID, st.Interface, st.Address, st.State, st.Priority, st.Since.Format(time.RFC3339), st.Transitions)
	if st.Master != "" {
		fmt.Fprintf(w, ", master %s", st.Master)
	}
	fmt.Fprintln(w)
	g := st.Guard
	fmt.Fprintf(w, "guard: %s", g.Mode)
	if g.PeerMAC != "" {
		fmt.Fprintf(w, ", peer MAC %s (from %s)", g.PeerMAC, g.PeerMACFrom)
	} else if g.Mode == GuardFwmark {
		fmt.Fprint(w, ", peer MAC not heard yet")
	}
	if g.Rule != "" {
		fmt.Fprintf(w, "\n  rule: %s", g.Rule)
	}
	for _, r := range g.Redirects {
		fmt.Fprintf(w, "\n  redirect: %s", r)
	}
	fmt.Fprintln(w)
	for _, sd := range st.SyncDaemons {
		fmt.Fprintf(w, "sync: %s\n", sd)
	}
	for _, s := range st.Services {
		fmt.Fprintf(w, "%s %s: %d conns, %d/%d pkts in/out\n", s.Service, s.Scheduler, s.Conns, s.InPkts, s.OutPkts)
		for _, r := range s.Realservers {
			health := "up"
			if !r.Up {
				health = "DOWN: " + r.Check
			}
			kernel := fmt.Sprintf("weight %d, %d active, %d inactive, %d conns", r.Weight, r.ActiveConns, r.InactiveConns, r.Conns)
			if !r.InKernel {
				kernel = "not in the kernel table"
			}
			fmt.Fprintf(w, "  -> %s %s; %s\n", r.Address, health, kernel)
		}
	}
}

// metricsCollector turns each scrape's Status into Prometheus metrics.
type metricsCollector struct {
	ask func(context.Context) (Status, error)
}

var (
	mState    = prometheus.NewDesc("lvslab_vrrp_state", "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER.", []string{"vrid", "interface"}, nil)
	mTrans    = prometheus.NewDesc("lvslab_vrrp_transitions_total", "VRRP state changes since start.", []string{"vrid"}, nil)
	mPeer     = prometheus.NewDesc("lvslab_guard_peer_known", "1 when the fwmark guard knows the peer's MAC.", []string{"mac", "from"}, nil)
	mSync     = prometheus.NewDesc("lvslab_ipvs_sync_daemons", "IPVS sync daemons running.", nil, nil)
	mSvcConns = prometheus.NewDesc("lvslab_ipvs_service_connections_total", "Connections the virtual service scheduled.", []string{"service"}, nil)
	mSvcPkts  = prometheus.NewDesc("lvslab_ipvs_service_in_packets_total", "Packets into the virtual service.", []string{"service"}, nil)
	mRSWeight = prometheus.NewDesc("lvslab_ipvs_realserver_weight", "Weight in the kernel table; -1 when removed.", []string{"service", "realserver"}, nil)
	mRSUp     = prometheus.NewDesc("lvslab_realserver_up", "1 when the health check passes.", []string{"service", "realserver"}, nil)
	mRSActive = prometheus.NewDesc("lvslab_ipvs_realserver_active_connections", "Active connections.", []string{"service", "realserver"}, nil)
)

// Describe sends nothing: an unchecked collector, since every scrape asks
// the daemon's loop, which is not running yet at registration.
func (metricsCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m metricsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := m.ask(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(mState, err)
		return
	}
	vrid := fmt.Sprint(st.VRID)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(mState, float64(slices.Index([]string{"INIT", "BACKUP", "MASTER"}, st.State)), vrid, st.Interface)
	counter(mTrans, uint64(st.Transitions), vrid)
	if st.Guard.PeerMAC != "" {
		gauge(mPeer, 1, st.Guard.PeerMAC, st.Guard.PeerMACFrom)
	}
	gauge(mSync, float64(len(st.SyncDaemons)))
	for _, s := range st.Services {
		counter(mSvcConns, s.Conns, s.Service)
		counter(mSvcPkts, s.InPkts, s.Service)
		for _, r := range s.Realservers {
			w := float64(r.Weight)
			if !r.InKernel {
				w = -1
			}
			up := 0.0
			if r.Up {
				up = 1
			}
			gauge(mRSWeight, w, s.Service, r.Address)
			gauge(mRSUp, up, s.Service, r.Address)
			gauge(mRSActive, float64(r.ActiveConns), s.Service, r.Address)
		}
	}
}
