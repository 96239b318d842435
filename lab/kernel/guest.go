package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvslab/lvslab/lab/runenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Spec is the command a micro-VM runs, handed to the guest's /init as
// spec.json in the control share.
type Spec struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	// Shares are host directories mounted read-write at the same path in
	// the guest, so results land on the host.
	Shares []string `json:"shares,omitempty"`
	// KernelVersion names the module tree mounted at /lib/modules/<v>.
	KernelVersion string `json:"kernel_version"`
}

// 9p mount tags and the guest paths of the control share.
const (
	tagRoot    = "hostroot"
	tagModules = "modules"
	tagCtl     = "ctl"
	GuestCtl   = "/run/lvslab-vm" // the control share, in the guest
	statusFile = "status"
	// startedFile appears when /init starts the command: from then on a
	// failed boot is not retried (the command may have had effects).
	startedFile = "started"
	specFile    = "spec.json"
	portOut     = "lvslab.stdout"
	portErr     = "lvslab.stderr"
	// exitInitFailed is the status when /init could not run the command.
	exitInitFailed = 125
)

func shareTag(i int) string { return "share" + strconv.Itoa(i) }

// Status is what the guest reports in the control share: the command's
// exit code, /init's error if it could not run it, and guest-clock times.
type Status struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
	// Boot is the guest's uptime when the command started; Command is how
	// long it ran.
	Boot    time.Duration `json:"boot_ns"`
	Command time.Duration `json:"command_ns"`
}

func writeStatus(st Status) error {
	data, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(GuestCtl, statusFile), data, 0o644); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// uptime is the guest's time since boot (CLOCK_BOOTTIME).
func uptime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// IsGuestInit reports whether this process is the micro-VM's /init.
func IsGuestInit() bool { return os.Getpid() == 1 && os.Args[0] == "/init" }

// GuestInit is /init inside the micro-VM: it builds the root (host / over
// 9p, read-only, with a tmpfs overlay), runs the command from spec.json and
// powers off. It never returns.
func GuestInit() {
	if err := guestRun(); err != nil {
		console("lvslab init: %v", err)
		writeStatus(Status{Code: exitInitFailed, Error: err.Error()})
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func console(format string, a ...any) {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(f, format+"\n", a...)
		f.Close()
	}
}

type mnt struct {
	src, target, fstype string
	flags               uintptr
	data                string
}

func mountAll(ms []mnt) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s %s on %s (%s): %w", m.fstype, m.src, m.target, m.data, err)
		}
	}
	return nil
}

const ninep = "trans=virtio,version=9p2000.L,msize=512000"

func guestRun() error {
	if err := mountAll([]mnt{
		{"devtmpfs", "/dev", "devtmpfs", 0, ""},
		{"proc", "/proc", "proc", 0, ""},
		{"sysfs", "/sys", "sysfs", 0, ""},
	}); err != nil {
		return err
	}
	if err := loadBootModules("/modules"); err != nil {
		return err
	}
	// The root: host / read-only (cached: it does not change under us),
	// and a tmpfs upper so the guest can write anywhere.
	if err := mountAll([]mnt{
		{tagRoot, "/host", "9p", unix.MS_RDONLY, ninep + ",cache=loose"},
		{"tmpfs", "/rw", "tmpfs", 0, "mode=0755"},
	}); err != nil {
		return err
	}
	for _, d := range []string{"/rw/upper", "/rw/work"} {
		os.MkdirAll(d, 0o755)
	}
	nr := "/newroot"
	if err := mountAll([]mnt{
		{"overlay", nr, "overlay", 0, "lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work"},
		{"proc", nr + "/proc", "proc", 0, ""},
		{"sysfs", nr + "/sys", "sysfs", 0, ""},
		{"devtmpfs", nr + "/dev", "devtmpfs", 0, ""},
		{"devpts", nr + "/dev/pts", "devpts", 0, "newinstance,ptmxmode=0666"},
		{"tmpfs", nr + "/dev/shm", "tmpfs", 0, ""},
		// A fresh /run: no host pid files or netns mounts leak in. /tmp
		// stays the overlay, so go test's binaries under /tmp are visible.
		{"tmpfs", nr + "/run", "tmpfs", 0, "mode=0755"},
		{tagCtl, nr + GuestCtl, "9p", 0, ninep},
	}); err != nil {
		return err
	}
	// What udev or systemd would link in /dev: bash's process
	// substitution needs /dev/fd.
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		os.Symlink(target, nr+"/dev/"+name)
	}
	data, err := os.ReadFile(nr + GuestCtl + "/" + specFile)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	var spec Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("parse spec: %w", err)
	}
	extra := []mnt{{tagModules, nr + "/lib/modules/" + spec.KernelVersion, "9p", unix.MS_RDONLY, ninep + ",cache=loose"}}
	for i, s := range spec.Shares {
		extra = append(extra, mnt{shareTag(i), nr + s, "9p", 0, ninep})
	}
	if err := mountAll(extra); err != nil {
		return err
	}
	out, err := openPort(portOut)
	if err != nil {
		return err
	}
	errOut, err := openPort(portErr)
	if err != nil {
		return err
	}
	if err := switchRoot(nr); err != nil {
		return err
	}
	unix.Sethostname([]byte("lvslab-vm"))
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	if err := os.WriteFile(filepath.Join(GuestCtl, startedFile), nil, 0o644); err != nil {
		return fmt.Errorf("report start: %w", err)
	}
	st := Status{Boot: uptime()}
	st.Code = runCommand(spec, out, errOut)
	st.Command = uptime() - st.Boot
	return writeStatus(st)
}

// loadBootModules loads the initramfs's modules in their file-name order
// (os.ReadDir sorts), which WriteInitramfs made the load order.
func loadBootModules(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", e.Name(), err)
		}
	}
	return nil
}

func openPort(name string) (*os.File, error) { return OpenPort(name, os.O_WRONLY) }

// OpenPort opens the guest end of the virtio-serial port called name (no
// udev in the micro-VM: it is found through sysfs).
func OpenPort(name string, flag int) (*os.File, error) {
	ports, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, p := range ports {
		b, _ := os.ReadFile(p)
		if strings.TrimSpace(string(b)) == name {
			return os.OpenFile("/dev/"+filepath.Base(filepath.Dir(p)), flag, 0)
		}
	}
	return nil, fmt.Errorf("no virtio-serial port %q", name)
}

// switchRoot makes dir the root, as switch_root does (initramfs stays in
// memory; it is small).
func switchRoot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

func runCommand(spec Spec, stdout, stderr *os.File) int {
	// exec.Command looks argv[0] up in our own PATH: take the caller's.
	for _, kv := range spec.Env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			os.Setenv("PATH", p)
		}
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env, cmd.Dir = append(spec.Env, runenv.InVM+"=1"), spec.Dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The command leads its own session, as in a shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "lvslab vm: %v\n", err)
		return 127
	}
	// As PID 1, /init inherits every orphan (keepalived's children when
	// their parent is SIGKILLed, say): it reaps them all, or they stay
	// zombies that look alive to kill(pid, 0) and to pid-file checks. Its
	// exit code is the command's.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			fmt.Fprintf(stderr, "lvslab vm: wait: %v\n", err)
			return 127
		case pid != cmd.Process.Pid:
			continue
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}
