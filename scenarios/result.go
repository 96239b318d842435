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
	// Runs counts the verdicts of a cell run several times (Tally).
	Runs map[Verdict]int `json:"runs,omitempty"`
	// Logs are the directors' logs, by node, and for a failed scenario
	// each director's IPVS, mangle and nat tables at the end.
	Logs map[string]string `json:"logs,omitempty"`
	// unservedBy is why the configs serve nothing, where the plan knew
	// (Options.Unserved).
	unservedBy string
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
