package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lvslab/lvslab/director"
	"github.com/lvslab/lvslab/scenarios/check"
	"github.com/lvslab/lvslab/scenarios/keepalivedconf"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Options say what to collect and how.
type Options struct {
	Config   string        // the main keepalived config
	Window   time.Duration // the live window
	Interval time.Duration // between live samples (0: 1 s)
	NoRedact bool          // keep auth_pass and passwords
	Progress io.Writer     // a line per step
}

// ErrMissing is a tool or file collect needs and the box lacks: the CLI
// exits 2 on it.
var ErrMissing = errors.New("missing")

// Collect reads the box it runs on. It changes nothing: every read is a
// read (iptables-save lists only tables that exist, and IPVS is read only
// where ip_vs is loaded already: asking its netlink family would load it).
func Collect(ctx context.Context, o Options) (*Bundle, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("collect reads the IPVS table and iptables-save, which need root: run it with sudo")
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		return nil, fmt.Errorf("keepalived not found on this box (install keepalived, or run collect on a director): %w", ErrMissing)
	}
	if _, err := os.Stat(o.Config); err != nil {
		return nil, fmt.Errorf("keepalived config: %w (--config names it): %w", err, ErrMissing)
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "lvslab collect: "+format+"\n", a...)
		}
	}
	b := &Bundle{Format: format, Collected: time.Now().UTC(), Config: o.Config}
	b.Host, _ = os.Hostname()
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		b.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	out, _ := exec.CommandContext(ctx, "keepalived", "-v").CombinedOutput()
	b.Keepalived, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")

	progress("the config %s, its includes and scripts", o.Config)
	cfg, err := b.configFiles(o)
	if err != nil {
		return nil, err
	}
	progress("sysctls, links, addresses, routes, neighbours")
	b.sysctls()
	b.Items = append(b.Items, Item{Name: "box.json sysctls", Source: "/proc/sys/net/ipv4/vs/*, /proc/sys/net/ipv4/conf/*/{arp_ignore,arp_announce,rp_filter}"})
	if err := b.network(); err != nil {
		return nil, err
	}
	b.Items = append(b.Items, Item{Name: "box.json links, addrs, routes, neighbours", Source: "netlink"})
	progress("rules: iptables-save, nft")
	b.command(ctx, "iptables.rules", "iptables-save")
	if _, err := exec.LookPath("nft"); err == nil {
		b.command(ctx, "nft.ruleset", "nft", "list", "ruleset")
	}
	b.SyncDaemons = []string{}
	if ds, err := director.SyncDaemons(); err == nil {
		for _, d := range ds {
			b.SyncDaemons = append(b.SyncDaemons, d.String())
		}
	}
	b.Live.VIPs = configVIPs(cfg)
	progress("IPVS and the VIPs, sampled over %s", o.Window)
	if err := b.live(ctx, o); err != nil {
		return nil, err
	}
	b.Items = append(b.Items, Item{Name: "box.json ipvs, sync_daemons, live", Source: "IPVS netlink (moby/ipvs), every " + interval(o).String()})
	return b, nil
}

func interval(o Options) time.Duration {
	if o.Interval > 0 {
		return o.Interval
	}
	return time.Second
}

// configFiles keeps the config, every file it includes and every script
// it names, redacted unless asked not to.
func (b *Bundle) configFiles(o Options) (*keepalivedconf.Config, error) {
	tree, err := keepalivedconf.ParseFile(o.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := keepalivedconf.Model(tree.Nodes)
	if err != nil {
		return nil, err
	}
	keep := func(path string, config bool) {
		data, err := keepalivedconf.ReadFile(path, keepalivedconf.MaxFileBytes)
		if err != nil {
			b.notCollected("%s: %v", path, err)
			return
		}
		var where []string
		if !o.NoRedact {
			data, where = redact(data, config)
		}
		b.AddFile(FileName(path), path, data, where)
	}
	for _, f := range tree.Files {
		keep(f, true)
	}
	scripts, err := check.ScriptPaths(cfg)
	if err != nil {
		return nil, err
	}
	for _, s := range scripts {
		if !filepath.IsAbs(s) {
			b.notCollected("%s: not an absolute path", s)
			continue
		}
		keep(s, false)
	}
	return cfg, nil
}

// notCollected lists in the manifest an item collect could not read, and why.
func (b *Bundle) notCollected(format string, a ...any) {
	b.Items = append(b.Items, Item{Name: "(not collected)", Source: fmt.Sprintf(format, a...)})
}

// configVIPs are the config's VIPs, each once.
func configVIPs(cfg *keepalivedconf.Config) []string {
	var out []string
	for _, in := range cfg.Instances {
		for _, v := range in.VIPs {
			out = append(out, v.Prefix.Addr().String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// command keeps a command's output as a file of the bundle; a failed
// command is an item saying why.
func (b *Bundle) command(ctx context.Context, name string, argv ...string) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		b.notCollected("%s: %v %s", strings.Join(argv, " "), err, strings.TrimSpace(errOut.String()))
		return
	}
	b.AddFile(name, strings.Join(argv, " "), out.Bytes(), nil)
}

// sysctls reads the IPVS sysctls and each interface's ARP and reverse-path
// settings.
func (b *Bundle) sysctls() {
	b.Sysctls = map[string]string{}
	var paths []string
	vs, _ := filepath.Glob("/proc/sys/net/ipv4/vs/*")
	paths = append(paths, vs...)
	for _, k := range []string{"arp_ignore", "arp_announce", "rp_filter"} {
		conf, _ := filepath.Glob("/proc/sys/net/ipv4/conf/*/" + k)
		paths = append(paths, conf...)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // write-only or gone
		}
		name := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
		b.Sysctls[name] = strings.TrimSpace(string(data))
	}
}

// network reads links, addresses, routes and neighbours through netlink.
func (b *Bundle) network() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		b.Links = append(b.Links, Link{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr.String(), Up: a.Flags&unix.IFF_UP != 0})
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		b.Addrs = append(b.Addrs, Addr{Link: names[a.LinkIndex], Prefix: a.IPNet.String()})
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil {
			dst = r.Dst.String()
		}
		s := fmt.Sprintf("%s dev %s table %d scope %s", dst, names[r.LinkIndex], r.Table, r.Scope)
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		b.Routes = append(b.Routes, s)
	}
	neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	for _, n := range neighs {
		b.Neigh = append(b.Neigh, Neigh{Link: names[n.LinkIndex], IP: n.IP.String(), MAC: n.HardwareAddr.String(), State: neighState(n.State)})
	}
	return nil
}

func neighState(s int) string {
	for bit, name := range map[int]string{netlink.NUD_REACHABLE: "REACHABLE", netlink.NUD_STALE: "STALE", netlink.NUD_DELAY: "DELAY",
		netlink.NUD_PROBE: "PROBE", netlink.NUD_FAILED: "FAILED", netlink.NUD_PERMANENT: "PERMANENT", netlink.NUD_NOARP: "NOARP", netlink.NUD_INCOMPLETE: "INCOMPLETE"} {
		if s&bit != 0 {
			return name
		}
	}
	return "NONE"
}

// live samples, over the window, which of the config's VIPs the box holds
// and each virtual service's packets; the table is the last sample's.
func (b *Bundle) live(ctx context.Context, o Options) error {
	// /proc/net/ip_vs exists while ip_vs is loaded (thread-self: this
	// thread's namespace, which lab tests enter alone); asking the kernel for
	// IPVS's netlink family would load the module: a change.
	if _, err := os.Stat("/proc/thread-self/net/ip_vs"); err != nil {
		b.IPVSAbsent = "ip_vs is not loaded: no IPVS table (collect does not load it)"
	}
	var h *ipvs.Handle
	if b.IPVSAbsent == "" {
		var err error
		if h, err = ipvs.New(""); err != nil {
			return fmt.Errorf("open IPVS: %w", err)
		}
		defer h.Close()
	}
	t0 := time.Now()
	for {
		s := Sample{At: time.Now().UTC(), InPkts: map[string]uint64{}}
		held, err := heldVIPs(b.Live.VIPs)
		if err != nil {
			return err
		}
		s.Held = held
		if h != nil {
			if b.IPVS, err = readIPVS(h); err != nil {
				return err
			}
			for _, svc := range b.IPVS {
				s.InPkts[svc.Key] = svc.InPkts
			}
		}
		b.Live.Samples = append(b.Live.Samples, s)
		if time.Since(t0) >= o.Window {
			b.Live.Seconds = time.Since(t0).Seconds()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval(o)):
		}
	}
}

// heldVIPs are those of vips on an interface other than lo: a realserver
// holds a VIP on lo, the VRRP MASTER on its interface.
func heldVIPs(vips []string) ([]string, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	held := []string{}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		if a.LinkIndex != 1 && slices.Contains(vips, ip.Unmap().String()) && !slices.Contains(held, ip.Unmap().String()) {
			held = append(held, ip.Unmap().String())
		}
	}
	slices.Sort(held)
	return held, nil
}

// readIPVS reads the table with its counters, as ipvsadm -Ln --stats.
func readIPVS(h *ipvs.Handle) ([]Service, error) {
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("read IPVS services: %w", err)
	}
	var out []Service
	for _, s := range svcs {
		svc := Service{Key: director.FromKernel(s).Key(), Scheduler: s.SchedName, Conns: uint64(s.Stats.Connections), InPkts: uint64(s.Stats.PacketsIn)}
		dests, err := h.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("read IPVS destinations of %s: %w", svc.Key, err)
		}
		for _, d := range dests {
			svc.Dests = append(svc.Dests, Dest{Addr: fmt.Sprintf("%s:%d", d.Address, d.Port), Forward: director.ForwardName(d.ConnectionFlags),
				Weight: d.Weight, Conns: uint64(d.Stats.Connections), InPkts: uint64(d.Stats.PacketsIn)})
		}
		out = append(out, svc)
	}
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}
