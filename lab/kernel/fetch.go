package kernel

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/lvslab/lvslab/lab/runenv"
)

// Kernel is a bootable kernel and its modules.
type Kernel struct {
	Version string
	// Vmlinuz is the kernel image qemu boots: the uncompressed PVH-capable
	// vmlinux when the cache has one, else the compressed bzImage.
	Vmlinuz string
	// BzImage is the distro's compressed image, for comparison.
	BzImage string
	// Modules is the directory /lib/modules/<Version> of this kernel,
	// with modules.dep.
	Modules string
}

// ErrNoKernel is returned when no kernel can be fetched here.
var ErrNoKernel = errors.New("no kernel for the micro-VM")

// Local returns a kernel given by the user: an image and a modules
// directory named after the kernel version (…/lib/modules/<version>).
func Local(vmlinuz, modules string) (*Kernel, error) {
	if _, err := os.Stat(vmlinuz); err != nil {
		return nil, fmt.Errorf("--vmlinuz: %w", err)
	}
	if _, err := os.Stat(filepath.Join(modules, "modules.dep")); err != nil {
		return nil, fmt.Errorf("--modules %s: no modules.dep (run depmod): %w", modules, err)
	}
	abs, _ := filepath.Abs(modules)
	k := &Kernel{Version: filepath.Base(abs), Vmlinuz: vmlinuz, BzImage: vmlinuz, Modules: abs}
	return k, checkModules(k)
}

// distroPackage names the distro's current generic kernel package, such as
// "linux-image-6.1.0-56-amd64" on Debian 12, from the metapackage's
// dependency. The cloud flavour is no use: it has no 9p.
func distroPackage(ctx context.Context) (string, error) {
	return metaDepends(ctx, nil, "here (is this Debian? give --vmlinuz and --modules)")
}

// metaDepends is the kernel package linux-image-amd64 depends on, as
// apt-cache with the options apt (none: the host's lists) sees it; where
// names the lists in errors.
func metaDepends(ctx context.Context, apt []string, where string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", append(slices.Clone(apt), "depends", "linux-image-amd64")...).Output()
	if err != nil {
		return "", fmt.Errorf("%w: apt-cache depends linux-image-amd64 %s: %v", ErrNoKernel, where, err)
	}
	m := kernelDepends.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: linux-image-amd64 depends on no kernel package %s", ErrNoKernel, where)
	}
	return string(m[1]), nil
}

var kernelDepends = regexp.MustCompile(`Depends: (linux-image-(\S+))`)

// Cached returns the default kernel in the cache (the one plain `lvslab
// kernel fetch` got: the distro's), else the newest there, or nil.
func Cached() *Kernel {
	root := kernelsDir()
	if v, err := os.ReadFile(filepath.Join(root, defaultFile)); err == nil {
		if k := cachedIn(filepath.Join(root, strings.TrimSpace(string(v)))); k != nil {
			return k
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "*", "vmlinuz"))
	if len(dirs) == 0 {
		return nil
	}
	return cachedIn(filepath.Dir(dirs[len(dirs)-1]))
}

// kernelsDir holds one directory per cached kernel, named by version.
func kernelsDir() string { return filepath.Join(runenv.CacheDir(), "kernels") }

// defaultFile names the default kernel's version in the cache; suite-S
// files name the version fetched for suite S.
const defaultFile = "default"

// Lookup finds a cached kernel by version ("5.10.0-32-amd64"), by the
// suite it was fetched for ("bullseye"), or "default"; the error lists
// what there is.
func Lookup(name string) (*Kernel, error) {
	if name == defaultFile {
		if k := Cached(); k != nil {
			return k, nil
		}
	}
	v := name
	for version, suites := range suiteVersions() {
		if slices.Contains(suites, name) {
			v = version
		}
	}
	if k := cachedIn(filepath.Join(kernelsDir(), v)); k != nil && filepath.Base(v) == v {
		return k, nil
	}
	var have []string
	for _, l := range List() {
		have = append(have, l.String())
	}
	return nil, fmt.Errorf("no cached kernel %q (have: %s): lvslab kernel fetch --suite SUITE", name, cmp.Or(strings.Join(have, "; "), "none"))
}

// suiteVersions maps each cached version to the suites it was fetched for
// (the suite-S files).
func suiteVersions() map[string][]string {
	out := map[string][]string{}
	files, _ := filepath.Glob(filepath.Join(kernelsDir(), "suite-*"))
	for _, f := range files {
		v, _ := os.ReadFile(f)
		version := strings.TrimSpace(string(v))
		out[version] = append(out[version], strings.TrimPrefix(filepath.Base(f), "suite-"))
	}
	return out
}

// Listed is a cached kernel and the suites it was fetched for.
type Listed struct {
	*Kernel
	Suites  []string
	Default bool
}

func (l Listed) String() string {
	s := l.Version
	if len(l.Suites) > 0 {
		s += " (" + strings.Join(l.Suites, ", ") + ")"
	}
	if l.Default {
		s += " default"
	}
	return s
}

// List returns the cached kernels, oldest version first.
func List() []Listed {
	def, suites := Cached(), suiteVersions()
	dirs, _ := filepath.Glob(filepath.Join(kernelsDir(), "*", "vmlinuz"))
	var out []Listed
	for _, d := range dirs {
		if k := cachedIn(filepath.Dir(d)); k != nil {
			out = append(out, Listed{Kernel: k, Suites: suites[k.Version], Default: def != nil && def.Version == k.Version})
		}
	}
	return out
}

func cachedIn(dir string) *Kernel {
	v := filepath.Base(dir)
	bz := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(bz); err != nil {
		return nil
	}
	k := &Kernel{Version: v, Vmlinuz: bz, BzImage: bz, Modules: filepath.Join(dir, "lib", "modules", v)}
	if _, err := os.Stat(filepath.Join(dir, "vmlinux")); err == nil {
		k.Vmlinuz = filepath.Join(dir, "vmlinux")
	}
	return k
}

// Find returns the newest cached kernel, or fetches the distro's current one
// when the cache is empty. Asking apt costs ~1 s, so a cached kernel is used
// as is; `lvslab kernel fetch` refreshes it.
func Find(ctx context.Context, progress io.Writer) (*Kernel, error) {
	if k := Cached(); k != nil {
		return k, nil
	}
	return Fetch(ctx, progress)
}

// Fetch returns the distro's current kernel from the cache, downloading and
// unpacking it first if needed (apt-get download + dpkg-deb -x + depmod;
// nothing is installed on the host), and makes it the default.
// progress gets one line per slow step.
func Fetch(ctx context.Context, progress io.Writer) (*Kernel, error) {
	pkg, err := distroPackage(ctx)
	if err != nil {
		return nil, err
	}
	k, err := fetchPackage(ctx, pkg, nil, progress)
	if err != nil {
		return nil, err
	}
	return k, os.WriteFile(filepath.Join(kernelsDir(), defaultFile), []byte(k.Version+"\n"), 0o644)
}

// Suites are the Debian suites whose kernels FetchSuite gets, by the line
// of their private apt sources list. Fetched and booted here: bullseye
// (5.10.0-32) and trixie (6.12.117); bookworm-backports also carries 6.12.
var Suites = map[string]string{
	"bullseye":           "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main",
	"bookworm":           "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
	"bookworm-backports": "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main",
	"trixie":             "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main",
}

// FetchSuite gets the current generic kernel of a Debian suite into the
// cache beside the others, through a private apt sources list and state
// directory (never the host's: nothing on the host changes).
func FetchSuite(ctx context.Context, suite string, progress io.Writer) (*Kernel, error) {
	line, ok := Suites[suite]
	if !ok {
		return nil, fmt.Errorf("%w: unknown suite %q: want one of %s", ErrNoKernel, suite, strings.Join(slices.Sorted(maps.Keys(Suites)), ", "))
	}
	dir := filepath.Join(runenv.CacheDir(), "apt", suite)
	for _, d := range []string{"lists/partial", "archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sources.list"), []byte(line+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), nil, 0o644); err != nil {
		return nil, err
	}
	apt := []string{"-o", "Dir::Etc::SourceList=" + filepath.Join(dir, "sources.list"), "-o", "Dir::Etc::SourceParts=/nonexistent",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"), "-o", "Dir::State::status=" + filepath.Join(dir, "status"),
		"-o", "Dir::Cache=" + dir, "-o", "Dir::Cache::archives=" + filepath.Join(dir, "archives"),
		"-o", "Dir::Etc::Preferences=/nonexistent", "-o", "Dir::Etc::PreferencesParts=/nonexistent"}
	fmt.Fprintf(progress, "lvslab: apt-get update for %s (private lists in %s)\n", suite, dir)
	if err := run(ctx, dir, "apt-get", append(apt, "-q", "update")...); err != nil {
		return nil, fmt.Errorf("%w: apt-get update for %s: %v", ErrNoKernel, suite, err)
	}
	pkg, err := metaDepends(ctx, apt, "in "+suite)
	if err != nil {
		return nil, err
	}
	k, err := fetchPackage(ctx, pkg, apt, progress)
	if err != nil {
		return nil, err
	}
	return k, os.WriteFile(filepath.Join(kernelsDir(), "suite-"+suite), []byte(k.Version+"\n"), 0o644)
}

// fetchPackage puts kernel package pkg into the cache unless it is there:
// apt-get download (with the apt options given), dpkg-deb -x, the modules
// moved to lib/modules if the package has them under usr/ (merged /usr,
// as from 6.12 on), depmod, and the ELF vmlinux taken out for PVH boot.
func fetchPackage(ctx context.Context, pkg string, apt []string, progress io.Writer) (*Kernel, error) {
	version := strings.TrimPrefix(pkg, "linux-image-")
	dir := filepath.Join(kernelsDir(), version)
	if _, err := os.Stat(filepath.Join(dir, "lib", "modules", version, "modules.dep")); err == nil {
		return cachedIn(dir), nil
	}
	fmt.Fprintf(progress, "lvslab: fetching kernel %s into %s (apt-get download, not installed)\n", pkg, dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create kernel cache: %w", err)
	}
	// Unpack next to the final place, then rename: a crash leaves no
	// half-made kernel in the cache.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-")
	if err != nil {
		return nil, fmt.Errorf("create kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := run(ctx, tmp, "apt-get", append(slices.Clone(apt), "download", pkg)...); err != nil {
		return nil, fmt.Errorf("%w: download %s failed (%v): check apt sources, or give --vmlinuz and --modules", ErrNoKernel, pkg, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("%w: apt-get download %s left %d .deb files", ErrNoKernel, pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if err := run(ctx, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		return nil, fmt.Errorf("unpack %s: %w", debs[0], err)
	}
	if _, err := os.Stat(filepath.Join(root, "lib", "modules")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Join(root, "lib"), 0o755); err != nil {
			return nil, err
		}
		if err := os.Rename(filepath.Join(root, "usr", "lib", "modules"), filepath.Join(root, "lib", "modules")); err != nil {
			return nil, fmt.Errorf("%s has no modules in lib/ or usr/lib/: %w", pkg, err)
		}
	}
	// The package's postinst would run depmod; we run it on the copy.
	if err := run(ctx, tmp, "depmod", "-b", root, version); err != nil {
		return nil, fmt.Errorf("depmod %s: %w (install kmod: make deps)", version, err)
	}
	if err := os.Rename(filepath.Join(root, "boot", "vmlinuz-"+version), filepath.Join(root, "vmlinuz")); err != nil {
		return nil, fmt.Errorf("%s has no vmlinuz: %w", pkg, err)
	}
	if err := extractVmlinux(ctx, filepath.Join(root, "vmlinuz"), filepath.Join(root, "vmlinux")); err != nil {
		fmt.Fprintf(progress, "lvslab: booting the compressed kernel (slower): %v\n", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(root, dir); err != nil {
		return nil, fmt.Errorf("store kernel in cache: %w", err)
	}
	k := cachedIn(dir)
	return k, checkModules(k)
}

// The compressed payloads a Debian bzImage holds (xz up to 6.1, zstd from
// 6.12 on), by magic, and the command that decompresses each.
var payloads = []struct {
	magic []byte
	argv  []string
	pkg   string
}{
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, []string{"xz", "-dc", "--single-stream"}, "xz-utils"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dcq"}, "zstd"},
}

// extractVmlinux unpacks the ELF kernel from a bzImage, if it can boot by
// PVH. qemu then jumps straight to the kernel's 64-bit entry: no firmware
// real-mode setup and no decompression, which under TCG saves ~3 s a boot.
func extractVmlinux(ctx context.Context, bzImage, out string) error {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	for _, p := range payloads {
		i := bytes.Index(data, p.magic)
		if i < 0 {
			continue
		}
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
		cmd.Stdin, cmd.Stdout = bytes.NewReader(data[i:]), f
		// zstd stops at the end of its frame but complains about the
		// bytes after it: the ELF it wrote is what counts.
		if err := cmd.Run(); err != nil && !hasPVHNote(out) {
			os.Remove(out)
			return fmt.Errorf("%s -d (install %s): %w", p.argv[0], p.pkg, err)
		}
		return checkPVH(out)
	}
	return fmt.Errorf("no xz or zstd payload in %s", bzImage)
}

// checkPVH removes out unless it has a PVH entry.
func checkPVH(out string) error {
	if !hasPVHNote(out) {
		os.Remove(out)
		return fmt.Errorf("kernel has no PVH entry note")
	}
	return nil
}

// hasPVHNote looks for the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (18) that
// marks a kernel qemu can boot by PVH.
func hasPVHNote(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(notes) >= 12 {
			le := binary.LittleEndian
			nsz, dsz, typ := le.Uint32(notes), le.Uint32(notes[4:]), le.Uint32(notes[8:])
			name := notes[12:min(len(notes), 12+int(nsz))]
			if typ == 18 && bytes.HasPrefix(name, []byte("Xen")) {
				return true
			}
			next := 12 + align4(int(nsz)) + align4(int(dsz))
			if next > len(notes) {
				break
			}
			notes = notes[next:]
		}
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }

func run(ctx context.Context, dir, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return err
		}
		return fmt.Errorf("%w: %s", err, lastLine(out.String()))
	}
	return nil
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "W: ") {
			last = t
		}
	}
	return last
}
