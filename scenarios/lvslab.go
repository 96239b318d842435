package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

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
	directors
}

// Name implements Implementation.
func (*GoDirector) Name() string { return "lvslab" }

var directorConf = template.Must(template.New("director.yaml").Parse(`# lvslab director on {{.Node}}, rendered by the scenario.
vrrp:
  interface: eth0
  vrid: {{.VRID}}
  priority: {{.Priority}}
  advert_int: 1s
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
	mode := map[Fix]string{FixNone: "none", FixFwmark: "fwmark", FixBackupOnly: "backup-only"}[fix]
	if mode == "" {
		return "", fmt.Errorf("the lvslab director does not do fix %s", fix)
	}
	dir := c.Directors[i]
	peerMAC := c.Peer(i).MAC.String()
	if d.LearnPeerMAC {
		peerMAC = ""
	}
	var conf bytes.Buffer
	err := directorConf.Execute(&conf, map[string]any{"Node": dir.Node, "VRID": c.VRID, "Priority": dir.Priority,
		"VIP": c.VIP, "Port": c.Port, "Realservers": c.Realservers(), "Mode": mode, "Mark": dir.Mark, "PeerMAC": peerMAC,
		"Socket": socket})
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
	d.procs[i], err = l.Box(c.Directors[i].Node).Start("director", []string{d.Binary, "director", "run", path})
	return err
}
