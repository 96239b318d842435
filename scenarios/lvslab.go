package scenarios

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/lvslab/lvslab/director"

	"github.com/lvslab/lvslab/lab"
)

// GoDirector is this project's Go director (`lvslab director run`), one per
// director box, configured as fixtures/director/*.yaml are.
type GoDirector struct {
	// Binary is the lvslab executable to run.
	Binary string
	// LearnPeerMAC leaves peer_mac out of the config: the fwmark guard
	// learns it from the peer's VRRP adverts.
	LearnPeerMAC bool
	// GARPRefresh sets vrrp.garp_refresh: the MASTER announces its VIPs
	// again this often.
	GARPRefresh time.Duration
	// Advert is vrrp.advert_int (0: 1 s), down to centiseconds (VRRP
	// version 3).
	Advert time.Duration
	directors
}

// Timings are the adverts' interval: the cluster's waits follow it.
func (d *GoDirector) Timings() Timers { return Timers{Advert: d.Advert} }

// Name implements Implementation.
func (d *GoDirector) Name() string {
	switch {
	case d.GARPRefresh > 0:
		return "lvslab, garp_refresh " + d.GARPRefresh.String()
	case d.Advert > 0:
		return "lvslab, advert_int " + d.Advert.String()
	}
	return "lvslab"
}

var directorConf = template.Must(template.New("director.yaml").Parse(`# lvslab director on {{.Node}}, rendered by the scenario.
vrrp:
  interface: eth0
  vrid: {{.VRID}}
  priority: {{.Priority}}
  advert_int: {{.Advert}}
{{- with .GARPRefresh}}
  garp_refresh: {{.}}
{{- end}}
services:
  - name: mysql
    vip: {{.VIP}}
    port: {{.Port}}
    scheduler: rr
    forward: dr
    realservers:
{{- range .Realservers}}
      - address: {{.}}
{{- end}}
status:
  socket: {{.Socket}}
  metrics: 127.0.0.1:9101   # the box's own loopback
guard:
  mode: {{.Mode}}
{{- if eq .Mode "fwmark"}}
  mark: {{.Mark}}
{{- if .MarkOnly}}
  redirect_peer: false   # the mark alone, as published
{{- end}}
{{- if .PeerMAC}}
  peer_mac: "{{.PeerMAC}}"
{{- end}}
{{- end}}
`))

// StatusSocket is where director i of the lab answers `lvslab director
// status`.
func (d *GoDirector) StatusSocket(l *lab.Lab, i int, c Cluster) string {
	return filepath.Join(l.Dir, c.Directors[i].Node, "director.sock")
}

// Config renders director i's config for fix, with its status socket.
func (d *GoDirector) Config(c Cluster, i int, fix Fix, socket string) (string, error) {
	mode := map[Fix]string{FixNone: "none", FixFwmark: "fwmark", FixFwmarkOnly: "fwmark", FixBackupOnly: "backup-only"}[fix]
	if mode == "" {
		return "", fmt.Errorf("the lvslab director does not do fix %s", fix)
	}
	if err := c.twoDirectors("the lvslab director"); err != nil {
		return "", err
	}
	dir := c.Directors[i]
	peerMAC := c.Peer(i).MAC.String()
	if d.LearnPeerMAC {
		peerMAC = ""
	}
	var conf bytes.Buffer
	err := directorConf.Execute(&conf, map[string]any{"Node": dir.Node, "VRID": c.VRID, "Priority": dir.Priority,
		"VIP": c.VIP, "Port": c.Port, "Realservers": c.Realservers(), "Mode": mode, "Mark": dir.Mark, "PeerMAC": peerMAC,
		"Socket": socket, "GARPRefresh": d.GARPRefresh, "MarkOnly": fix == FixFwmarkOnly, "Advert": cmp.Or(c.Advert, time.Second)})
	return conf.String(), err
}

// Start implements Implementation.
func (d *GoDirector) Start(ctx context.Context, l *lab.Lab, c Cluster, i int, fix Fix) error {
	conf, err := d.Config(c, i, fix, d.StatusSocket(l, i, c))
	if err != nil {
		return err
	}
	path := filepath.Join(l.Dir, c.Directors[i].Node, "director.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := l.Box(c.Directors[i].Node).Start("director", []string{d.Binary, "director", "run", path})
	d.started(i, p)
	return err
}

// Settle waits until both directors, restarted, report the states the
// cluster wants: director 0 MASTER, director 1 BACKUP. A VIP left by a
// SIGKILL and the old services make a cluster look ready before its
// daemons have taken over.
func (d *GoDirector) Settle(ctx context.Context, l *lab.Lab, c Cluster) error {
	want := [2]string{"MASTER", "BACKUP"}
	return waitPair(ctx, d, 30*time.Second, func() string {
		for i := range c.Directors {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := director.ReadStatus(sctx, d.StatusSocket(l, i, c))
			cancel()
			if err != nil {
				return fmt.Sprintf("%s: status: %v", c.Directors[i].Node, err)
			}
			if st.State != want[i] {
				return fmt.Sprintf("%s is %s, not %s", c.Directors[i].Node, st.State, want[i])
			}
		}
		return ""
	})
}
