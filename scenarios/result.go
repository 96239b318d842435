package scenarios

import (
	"slices"
	"time"

	"github.com/lvslab/lvslab/director"
)

// Result is one scenario run: verdict, expectation and the evidence.
type Result struct {
	// Cell names the result in a suite (the conformance spec's text); in
	// a merged report, Shard, Host and Kernel say where it ran.
	Cell   string `json:"cell,omitempty"`
	Shard  string `json:"shard,omitempty"`
	Host   string `json:"host,omitempty"`
	Kernel string `json:"kernel,omitempty"`

	// Service names the virtual service of a pair with several.
	Service        string  `json:"service,omitempty"`
	Scenario       Event   `json:"scenario"`
	Implementation string  `json:"implementation"`
	Fix            Fix     `json:"fix"`
	Verdict        Verdict `json:"verdict"`
	Expected       Verdict `json:"expected"`
	Pass           bool    `json:"pass"`
	Reason         string  `json:"reason"`
	// Reasons are the judge's, as values (Reason is their text).
	Reasons []Reason `json:"reasons,omitempty"`

	Connections int `json:"connections"`
	Served      int `json:"served"`
	Hung        int `json:"hung"`
	Errors      int `json:"errors"`
	// Share counts connections by the @@server_id that served them.
	Share map[int]int `json:"share"`
	// Evidence, per director or bridge port, over the traffic only.
	IPVS         map[string]IPVSCounters `json:"ipvs"`
	TimeExceeded map[string]uint64       `json:"icmp_time_exceeded"`
	Frames       map[string]PortFrames   `json:"bridge_frames"`

	// Failover is how long the event took to take effect: the BACKUP
	// holding the VIP, or the dead realserver out of both tables.
	Failover time.Duration `json:"failover_ns,omitempty"`
	Setup    time.Duration `json:"setup_ns"`
	// Admission is how long the lab waited for admission (lab.Admit)
	// while it was built: part of Setup, not of any bound.
	Admission time.Duration `json:"admission_ns"`
	Traffic   time.Duration `json:"traffic_ns"`
	Conns     []Conn        `json:"conns"`
	// Timeline samples the bridge every 100 ms during the traffic, from
	// TimelineStart (its samples' At count from there).
	Timeline      []Sample  `json:"timeline"`
	TimelineStart time.Time `json:"timeline_start"`
	// Bounces is what a capture on the bridge saw during the traffic, and
	// Pcap the file it was written to, if any.
	Bounces *Bounces      `json:"bounces,omitempty"`
	Capture *CaptureStats `json:"capture,omitempty"`
	// PassiveFromClients counts the segments to VIP:port the capture saw
	// reach the passive box from clients (not from a director).
	PassiveFromClients *uint64 `json:"passive_from_clients,omitempty"`
	Pcap               string  `json:"pcap,omitempty"`
	// SyncDaemons are the IPVS sync daemons each director ran after the
	// traffic, under the backup-only fix.
	SyncDaemons map[string][]director.SyncDaemon `json:"sync_daemons,omitempty"`
	// Writes is the write workload across a failover (failover and
	// adversity events).
	Writes *WriteStats `json:"writes,omitempty"`
	// Takeovers counts the times the BACKUP took the VIP during an
	// adversity event.
	Takeovers *int `json:"backup_takeovers,omitempty"`
	// Outages are when a flapping box's servers were down (MySQLFlap):
	// from each stop to both directors sending to it again. DownErrors
	// counts the connections refused or closed (Conn.refused) that
	// overlapped one.
	Outages    []Outage `json:"outages,omitempty"`
	DownErrors int      `json:"down_errors,omitempty"`
	// MovedErrors counts the connections reset or closed as the VIP moved
	// under them (Result.moved).
	MovedErrors int `json:"moved_errors,omitempty"`
	// Load: the paced workload's rate (connections/s; 0 for the plain
	// read workload), the served connections' latency percentiles,
	// frames on the directors' bridge ports per connection, and the
	// machine's softirq time during the traffic (every CPU; meaningful
	// when one lab runs at a time). Single: one director, the reference.
	Rate          int         `json:"rate,omitempty"`
	Single        bool        `json:"single_director,omitempty"`
	Latency       Percentiles `json:"latency"`
	FramesPerConn float64     `json:"director_frames_per_conn"`
	SoftirqMs     uint64      `json:"softirq_ms"`
	// Runs counts the verdicts of a cell run several times (Tally), and
	// RunReasons is the first reason seen for each.
	Runs       map[Verdict]int    `json:"runs,omitempty"`
	RunReasons map[Verdict]string `json:"run_reasons,omitempty"`
	// Logs are the directors' logs, by node, and for a failed scenario
	// each director's IPVS, mangle and nat tables at the end.
	Logs map[string]string `json:"logs,omitempty"`
}

// record fills the observers' counts over the traffic: each director's
// IPVS and ICMP time exceeded, each bridge port's frames, from the
// snapshots before and after it; and the connections' latencies.
func (r *Result) record(c Cluster, before, after snapshot) {
	r.IPVS, r.TimeExceeded, r.Frames = map[string]IPVSCounters{}, map[string]uint64{}, map[string]PortFrames{}
	for _, d := range c.Directors {
		r.IPVS[d.Node] = after.ipvs[d.Node].Sub(before.ipvs[d.Node])
		r.TimeExceeded[d.Node] = after.te[d.Node] - before.te[d.Node]
	}
	for k, v := range after.frames {
		r.Frames[k] = PortFrames{Rx: v.Rx - before.frames[k].Rx, Tx: v.Tx - before.frames[k].Tx}
	}
	r.Latency = latencies(r.Conns)
	var dirFrames uint64
	for _, d := range c.Directors {
		f := r.Frames[d.Node+"."+d.Iface]
		dirFrames += f.Rx + f.Tx
	}
	if len(r.Conns) > 0 {
		r.FramesPerConn = float64(dirFrames) / float64(len(r.Conns))
	}
}

// evidence is what r recorded, for the judge: passive is the director
// not holding the VIP, wantServers how many realservers should serve.
func (r *Result) evidence(c Cluster, passive string, wantServers int, unservedBy string) Evidence {
	e := Evidence{Scenario: r.Scenario, Fix: r.Fix, Expected: r.Expected, UnservedBy: unservedBy,
		Passive: passive, PassivePkts: r.IPVS[passive].InPkts, Others: map[string]uint32{}, WantServers: wantServers,
		Bounces: r.Bounces, Capture: r.Capture, PassiveFromClients: r.PassiveFromClients,
		Conns: r.Conns, Outages: r.Outages, Takeovers: r.Takeovers, Healed: r.Failover, Writes: r.Writes}
	for _, d := range c.Directors[min(2, len(c.Directors)):] {
		e.Others[d.Node] = r.IPVS[d.Node].InPkts
	}
	for _, te := range r.TimeExceeded {
		e.TimeExceeded += te
	}
	return e
}

// judge sets r's verdict, and its connections by outcome, from e.
func (r *Result) judge(e Evidence) {
	j := Judge(e)
	r.Verdict, r.Pass, r.Reasons, r.Reason = j.Verdict, j.Pass, j.Reasons, reasonsText(j.Reasons)
	t := j.conns
	r.Connections, r.Served, r.Hung, r.Errors, r.Share = len(e.Conns), t.served, t.hung, t.errors, t.share
	r.DownErrors, r.MovedErrors = t.down, t.moved
}

// Outage is a time a box's servers were down.
type Outage struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// during says whether connection c overlapped one of outages.
func during(outages []Outage, c Conn) bool {
	return slices.ContainsFunc(outages, func(o Outage) bool {
		return c.Start.Before(o.To) && c.Start.Add(c.Latency).After(o.From)
	})
}

// Sample is the frames bridge ports carried in one interval: on the
// client's port, and on the directors' ports. With the loop, director
// frames far outnumber client frames.
type Sample struct {
	At        time.Duration `json:"at_ns"`
	Client    uint64        `json:"client"`
	Directors uint64        `json:"directors"`
}

// SampleInterval is the Timeline's resolution.
const SampleInterval = 100 * time.Millisecond
