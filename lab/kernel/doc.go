// Package kernel runs commands on a kernel that has IPVS: natively when the
// host kernel has ip_vs (or can load it), otherwise inside a throwaway qemu
// micro-VM that boots a stock distro kernel with the host's own userspace.
//
// The micro-VM: the distro's linux-image package is downloaded with
// apt-get and unpacked (never installed) into a cache; an initramfs made in
// Go holds the static lvslab binary as /init and the few modules needed to
// mount the host's / read-only over 9p with a tmpfs overlay on top. /init
// then runs the command with the caller's working directory and
// environment, streams its stdout and stderr over virtio-serial ports,
// writes its exit code to a shared control directory and powers off.
package kernel
