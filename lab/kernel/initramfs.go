package kernel

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"
)

// bootModules are what /init needs to mount the root: virtio PCI, 9p over
// virtio, overlayfs, and virtio-serial for the command's output. Their
// dependencies come from modules.dep. Everything else (ip_vs, veth, bridge,
// xt_mac) is loaded later by modprobe from the 9p-mounted module tree.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_console"}

// ipvsModules are what the labs need from a kernel: IPVS with the usual
// schedulers, the netfilter matches of the loop guard, and the qdiscs and
// classifier of the impairments (lab.Impair).
var ipvsModules = []string{"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "xt_mac", "xt_mark", "veth", "bridge",
	"sch_netem", "sch_prio", "cls_u32"}

// checkModules fails, naming the module, if k lacks one the labs need.
func checkModules(k *Kernel) error {
	_, err := resolveModules(k.Modules, ipvsModules)
	return err
}

// cpioWriter writes the "newc" cpio format the kernel unpacks into rootfs.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	err error
}

func (c *cpioWriter) header(name string, mode, size, rdevMajor, rdevMinor int) {
	if c.err != nil {
		return
	}
	c.ino++
	_, c.err = fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0, name)
	c.pad(110 + len(name) + 1)
}

func (c *cpioWriter) pad(n int) {
	if c.err == nil && n%4 != 0 {
		_, c.err = c.w.Write(make([]byte, 4-n%4))
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0, 0, 0) }

func (c *cpioWriter) charDev(name string, major, minor int) {
	c.header(name, 0o020600, 0, major, minor)
}

func (c *cpioWriter) file(name string, mode int, data []byte) {
	c.header(name, 0o100000|mode, len(data), 0, 0)
	if c.err == nil {
		_, c.err = c.w.Write(data)
	}
	c.pad(len(data))
}

func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// writeInitramfs writes an initramfs holding init (a static executable) as
// /init and the boot modules of k, in load order, under /modules.
func writeInitramfs(w io.Writer, init string, k *Kernel) error {
	if err := checkStatic(init); err != nil {
		return err
	}
	initData, err := os.ReadFile(init)
	if err != nil {
		return fmt.Errorf("read init: %w", err)
	}
	mods, err := resolveModules(k.Modules, bootModules)
	if err != nil {
		return err
	}
	c := &cpioWriter{w: bufio.NewWriter(w)}
	c.dir("dev")
	// The kernel opens /dev/console for /init's stdio before devtmpfs.
	c.charDev("dev/console", 5, 1)
	c.dir("modules")
	c.file("init", 0o755, initData)
	for i, m := range mods {
		data, err := readModule(filepath.Join(k.Modules, m))
		if err != nil {
			return err
		}
		c.file(fmt.Sprintf("modules/%02d-%s", i, strings.TrimSuffix(filepath.Base(m), ".xz")), 0o644, data)
	}
	return c.close()
}

// readModule reads a module file, decompressing a .ko.xz (Debian's
// modules from 6.12 on): /init loads modules with finit_module and no
// flags, which takes only an uncompressed module.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("module %s: %w", path, err)
		}
	case !strings.HasSuffix(path, ".ko"):
		return nil, fmt.Errorf("module %s: compressed in a way lvslab cannot read (want .ko or .ko.xz)", path)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	return data, nil
}

// checkStatic refuses a dynamically linked /init: the initramfs has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("init %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("init %s is dynamically linked: build lvslab with CGO_ENABLED=0 (make build)", path)
		}
	}
	return nil
}

// resolveModules returns the module files (relative to dir) to load for
// names, dependencies first, each once, from dir/modules.dep. Modules the
// kernel has built in are skipped.
func resolveModules(dir string, names []string) ([]string, error) {
	deps, err := readModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, _ := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	byName := map[string]string{}
	for path := range deps {
		byName[moduleName(path)] = path
	}
	var order []string
	seen := map[string]bool{}
	var visit func(path string)
	visit = func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		// modules.dep lists the nearest dependency first; load in reverse.
		d := deps[path]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i])
		}
		order = append(order, path)
	}
	for _, n := range names {
		path, ok := byName[n]
		switch {
		case ok:
			visit(path)
		case strings.Contains(string(builtin), "/"+n+".ko\n"):
		default:
			return nil, fmt.Errorf("kernel %s has no module %s (neither in modules.dep nor built in)", filepath.Base(dir), n)
		}
	}
	return order, nil
}

func readModulesDep(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read modules.dep (run depmod): %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[mod] = strings.Fields(rest)
		}
	}
	return deps, sc.Err()
}

// moduleName turns "kernel/net/9p/9pnet_virtio.ko" into "9pnet_virtio".
func moduleName(path string) string {
	b := filepath.Base(path)
	return b[:strings.Index(b, ".ko")]
}
