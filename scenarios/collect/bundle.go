package collect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Bundle is what collect read on one box. Its files (the keepalived
// config, its includes and scripts, the rules) are kept as text beside
// it, by their name in the bundle.
type Bundle struct {
	Format     int       `json:"format"`
	Collected  time.Time `json:"collected"`
	Host       string    `json:"host"`
	Kernel     string    `json:"kernel"`     // uname -r
	Keepalived string    `json:"keepalived"` // keepalived -v, its first line
	// Config is the main keepalived config's path on the box.
	Config string `json:"config"`
	// Sysctls are the IPVS sysctls (net.ipv4.vs.*) and each interface's
	// arp_ignore, arp_announce and rp_filter, by their sysctl name.
	Sysctls map[string]string `json:"sysctls"`
	Links   []Link            `json:"links"`
	Addrs   []Addr            `json:"addrs"`
	Routes  []string          `json:"routes"`
	Neigh   []Neigh           `json:"neighbours"`
	// IPVS is the table with its counters at the end of the live window;
	// IPVSAbsent says why there is none (ip_vs not loaded: collect does
	// not load it).
	IPVS        []Service `json:"ipvs"`
	IPVSAbsent  string    `json:"ipvs_absent,omitempty"`
	SyncDaemons []string  `json:"sync_daemons"`
	Live        Live      `json:"live"`
	// Items are the manifest: every item, where it came from, what was
	// redacted in it.
	Items []Item `json:"items"`

	files map[string][]byte
}

// format is the bundle format this lvslab writes and reads.
const format = 1

// Link is a network interface.
type Link struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	MAC   string `json:"mac,omitempty"`
	Up    bool   `json:"up"`
}

// Addr is an address on an interface.
type Addr struct {
	Link   string `json:"link"`
	Prefix string `json:"prefix"`
}

// Neigh is a neighbour (ARP) entry.
type Neigh struct {
	Link  string `json:"link"`
	IP    string `json:"ip"`
	MAC   string `json:"mac,omitempty"`
	State string `json:"state"`
}

// Service is an IPVS virtual service with its counters.
type Service struct {
	Key       string `json:"key"` // TCP 192.168.1.200:3306, FWM 3
	Scheduler string `json:"scheduler"`
	Conns     uint64 `json:"conns"`
	InPkts    uint64 `json:"in_pkts"`
	Dests     []Dest `json:"dests"`
}

// Dest is a realserver of a Service, its forwarding as ipvsadm shows it:
// Route, Masq, Tunnel, or Local (which older kernels show for an address
// of the box itself; 6.1 shows Route).
type Dest struct {
	Addr    string `json:"addr"`
	Forward string `json:"forward"`
	Weight  int    `json:"weight"`
	Conns   uint64 `json:"conns"`
	InPkts  uint64 `json:"in_pkts"`
}

// Live is what the box did over the window: a sample per interval.
type Live struct {
	Seconds float64  `json:"seconds"`
	VIPs    []string `json:"vips"` // the config's
	Samples []Sample `json:"samples"`
}

// Sample is one reading: the config's VIPs the box held on an interface
// (not lo), and each virtual service's packet counter.
type Sample struct {
	At     time.Time         `json:"at"`
	Held   []string          `json:"held"`
	InPkts map[string]uint64 `json:"in_pkts"`
}

// Item is one line of the manifest.
type Item struct {
	Name     string   `json:"name"`   // in the bundle
	Source   string   `json:"source"` // a path on the box, a command, netlink
	Redacted []string `json:"redacted,omitempty"`
}

// File returns the text of the bundle's file name (as Items name it).
func (b *Bundle) File(name string) ([]byte, bool) {
	data, ok := b.files[name]
	return data, ok
}

// Names are the bundle's files, sorted.
func (b *Bundle) Names() []string {
	var out []string
	for n := range b.files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// AddFile keeps a file's text under name, and its manifest item.
func (b *Bundle) AddFile(name, source string, data []byte, redacted []string) {
	if b.files == nil {
		b.files = map[string][]byte{}
	}
	b.files[name] = data
	b.Items = append(b.Items, Item{Name: name, Source: source, Redacted: redacted})
}

// FileName is the bundle name of a file collected from path on the box.
func FileName(path string) string { return "files" + filepath.Clean("/"+path) }

// Manifest is the MANIFEST: one line per item.
func (b *Bundle) Manifest() string {
	var out strings.Builder
	fmt.Fprintf(&out, "lvslab collect, format %d, from %s at %s (kernel %s, %s)\n\n", b.Format, b.Host, b.Collected.Format(time.RFC3339), b.Kernel, b.Keepalived)
	for _, it := range b.Items {
		fmt.Fprintf(&out, "%-40s %s", it.Name, it.Source)
		if len(it.Redacted) > 0 {
			fmt.Fprintf(&out, "  [redacted: %s]", strings.Join(it.Redacted, "; "))
		}
		out.WriteString("\n")
	}
	return out.String()
}

// Write writes the bundle as a gzipped tar: box.json, MANIFEST and the
// files.
func (b *Bundle) Write(w io.Writer) error {
	meta, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: b.Collected}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("box.json", meta); err != nil {
		return err
	}
	if err := add("MANIFEST", []byte(b.Manifest())); err != nil {
		return err
	}
	for _, n := range b.Names() {
		if err := add(n, b.files[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// WriteFile writes the bundle to path; a failed write leaves no file.
func (b *Bundle) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := b.Write(f); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// maxBundleFile bounds each file read from a bundle: a bundle is a
// user's input.
const maxBundleFile = 16 << 20

// Read reads a bundle: a .tar.gz that collect wrote, or a directory it
// was unpacked into.
func Read(p string) (*Bundle, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	if st.IsDir() {
		err = readDir(p, files)
	} else {
		err = readTarGz(p, files)
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", p, err)
	}
	meta, ok := files["box.json"]
	if !ok {
		return nil, fmt.Errorf("read bundle %s: no box.json: not a bundle of lvslab collect", p)
	}
	var b Bundle
	if err := json.Unmarshal(meta, &b); err != nil {
		return nil, fmt.Errorf("read bundle %s: box.json: %w", p, err)
	}
	if b.Format != format {
		return nil, fmt.Errorf("read bundle %s: format %d, this lvslab reads %d", p, b.Format, format)
	}
	delete(files, "box.json")
	delete(files, "MANIFEST")
	b.files = files
	return &b, nil
}

func readTarGz(p string, files map[string][]byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		if strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("%s: a name outside the bundle", h.Name)
		}
		var buf bytes.Buffer
		if n, err := io.Copy(&buf, io.LimitReader(tr, maxBundleFile+1)); err != nil {
			return err
		} else if n > maxBundleFile {
			return fmt.Errorf("%s: over %d bytes", h.Name, maxBundleFile)
		}
		files[name] = buf.Bytes()
	}
}

func readDir(root string, files map[string][]byte) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if len(data) > maxBundleFile {
			return fmt.Errorf("%s: over %d bytes", rel, maxBundleFile)
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
}

// Unpack writes the bundle's files under dir (files/ETC/... as on the
// box), so the keepalived reader can follow the config's includes as on
// the box; it returns the main config's path there.
func (b *Bundle) Unpack(dir string) (string, error) {
	for n, data := range b.files {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, filepath.FromSlash(FileName(b.Config))), nil
}
