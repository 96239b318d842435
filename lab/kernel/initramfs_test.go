package kernel

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// fakeModules writes a module tree with modules.dep in the kernel's format.
func fakeModules(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	dep := `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		mod, _, _ := strings.Cut(line, ":")
		p := filepath.Join(dir, mod)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("module "+mod), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	// overlay is built in here, as some kernels have it.
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/overlayfs/overlay.ko\n"), 0o644)
	return dir
}

func TestResolveModules(t *testing.T) {
	dir := fakeModules(t)
	got, err := resolveModules(dir, bootModules)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, moduleName(p))
	}
	want := []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
		"9pnet", "9pnet_virtio", "netfs", "fscache", "9p", "virtio_console"}
	if !slices.Equal(names, want) {
		t.Errorf("load order:\ngot  %v\nwant %v", names, want)
	}
	err = checkModules(&Kernel{Modules: dir})
	if err == nil || !strings.Contains(err.Error(), "kernel 6.1.0-test has no module ip_vs") {
		t.Errorf("kernel without ip_vs: got %v, want an error naming ip_vs", err)
	}
}

// TestWriteInitramfs reads the archive back with GNU cpio, an independent
// reader of the newc format.
func TestWriteInitramfs(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		// labtest.RequireTool, which this package's own tests cannot import.
		if os.Getenv("CI") == "true" {
			t.Fatal("needs cpio (install cpio: make deps) (CI=true: missing tools fail)")
		}
		t.Skip("needs cpio (install cpio: make deps)")
	}
	init := filepath.Join(t.TempDir(), "init")
	build := exec.Command("go", "build", "-o", init, "../../cmd/lvslab")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build static init: %v\n%s", err, out)
	}
	var buf bytes.Buffer
	k := &Kernel{Version: "6.1.0-test", Modules: fakeModules(t)}
	if err := writeInitramfs(&buf, init, k); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	listing := string(out)
	for _, want := range []string{"crw-------", " dev/console", "-rwxr-xr-x", " init", " modules/00-virtio_ring.ko", " modules/10-virtio_console.ko"} {
		if !strings.Contains(listing, want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, listing)
		}
	}
	// Extract init and compare bytes.
	dir := t.TempDir()
	cmd = exec.Command("cpio", "-id", "--quiet", "init")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v %s", err, out)
	}
	a, _ := os.ReadFile(init)
	b, _ := os.ReadFile(filepath.Join(dir, "init"))
	if !bytes.Equal(a, b) {
		t.Errorf("extracted init: %d bytes, want the %d bytes written", len(b), len(a))
	}
}

func TestWriteInitramfsRejectsDynamicInit(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sh, _ = filepath.EvalSymlinks(sh)
	err = writeInitramfs(&bytes.Buffer{}, sh, &Kernel{Modules: fakeModules(t)})
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("dynamic init %s: got %v, want an error telling to build with CGO_ENABLED=0", sh, err)
	}
}

func TestDetectRejectsUnknownMode(t *testing.T) {
	if _, err := Detect("xen"); err == nil || !strings.Contains(err.Error(), "want native or vm") {
		t.Errorf("Detect(xen): got %v, want an error listing native and vm", err)
	}
}

// TestReadModuleXZ: a .ko.xz module (Debian from 6.12 on) goes into the
// initramfs decompressed, as finit_module without flags needs it; an
// unknown compression is refused by name.
func TestReadModuleXZ(t *testing.T) {
	dir := t.TempDir()
	want := []byte("\x7fELF a module's bytes")
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(want)
	w.Close()
	os.WriteFile(filepath.Join(dir, "9p.ko.xz"), buf.Bytes(), 0o644)
	if got, err := readModule(filepath.Join(dir, "9p.ko.xz")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("readModule(.ko.xz) = %q, %v; want the decompressed bytes", got, err)
	}
	os.WriteFile(filepath.Join(dir, "9p.ko.zst"), []byte("(zstd)"), 0o644)
	if _, err := readModule(filepath.Join(dir, "9p.ko.zst")); err == nil || !strings.Contains(err.Error(), "want .ko or .ko.xz") {
		t.Errorf("readModule(.ko.zst): %v, want refused", err)
	}
}

// TestCacheListAndLookup: kernels sit side by side in the cache; the
// default file names the default (not the newest), a suite file names the
// version fetched for it, and a name that is no version or suite is
// refused with the list of what there is.
func TestCacheListAndLookup(t *testing.T) {
	t.Setenv("LVSLAB_CACHE", t.TempDir())
	for _, v := range []string{"5.10.0-32-amd64", "6.1.0-57-amd64", "6.12.117+deb13-amd64"} {
		os.MkdirAll(filepath.Join(kernelsDir(), v), 0o755)
		os.WriteFile(filepath.Join(kernelsDir(), v, "vmlinuz"), nil, 0o644)
	}
	os.WriteFile(filepath.Join(kernelsDir(), "suite-bullseye"), []byte("5.10.0-32-amd64\n"), 0o644)
	if k := Cached(); k == nil || k.Version != "6.12.117+deb13-amd64" {
		t.Errorf("without a default file: %v, want the newest", k)
	}
	os.WriteFile(filepath.Join(kernelsDir(), defaultFile), []byte("6.1.0-57-amd64\n"), 0o644)
	var got []string
	for _, l := range List() {
		got = append(got, l.String())
	}
	if want := []string{"5.10.0-32-amd64 (bullseye)", "6.1.0-57-amd64 default", "6.12.117+deb13-amd64"}; !slices.Equal(got, want) {
		t.Errorf("List: %q, want %q", got, want)
	}
	for name, want := range map[string]string{"bullseye": "5.10.0-32-amd64", "default": "6.1.0-57-amd64", "6.12.117+deb13-amd64": "6.12.117+deb13-amd64"} {
		if k, err := Lookup(name); err != nil || k.Version != want {
			t.Errorf("Lookup(%q): %v, %v; want %s", name, k, err, want)
		}
	}
	for _, name := range []string{"trixie", "../kernels/6.1.0-57-amd64"} {
		if _, err := Lookup(name); err == nil || !strings.Contains(err.Error(), "have: 5.10.0-32-amd64 (bullseye)") {
			t.Errorf("Lookup(%q): %v, want refused with the list", name, err)
		}
	}
}
