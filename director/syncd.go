package director

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The IPVS connection-sync daemon, through IPVS's generic netlink family.
// moby/ipvs speaks that family for services and destinations but has no
// daemon commands, so these few build the same messages themselves with
// vishvananda/netlink's nl package (the layer moby/ipvs is built on). The
// numbers are the kernel's, from include/uapi/linux/ip_vs.h.
const (
	ipvsCmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON
	ipvsCmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	ipvsCmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON

	ipvsCmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested:

	ipvsDaemonAttrState    = 1 // IPVS_DAEMON_ATTR_STATE, u32
	ipvsDaemonAttrMcastIfn = 2 // IPVS_DAEMON_ATTR_MCAST_IFN, string
	ipvsDaemonAttrSyncID   = 3 // IPVS_DAEMON_ATTR_SYNC_ID, u32
	ipvsDaemonAttrMaxLen   = 4 // IPVS_DAEMON_ATTR_SYNC_MAXLEN, u16
	ipvsDaemonAttrGroup    = 5 // IPVS_DAEMON_ATTR_MCAST_GROUP, IPv4 address
	ipvsDaemonAttrPort     = 7 // IPVS_DAEMON_ATTR_MCAST_PORT, u16
	ipvsDaemonAttrTTL      = 8 // IPVS_DAEMON_ATTR_MCAST_TTL, u8
)

// SyncState is a sync daemon's role (IP_VS_STATE_MASTER/BACKUP).
type SyncState uint32

// Sync daemon roles.
const (
	SyncMaster SyncState = 1 // sends the connection table
	SyncBackup SyncState = 2 // receives it; with net.ipv4.vs.backup_only=1 the box stops balancing
)

func (s SyncState) String() string {
	switch s {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("state-%d", uint32(s))
}

// SyncDaemon is one running sync daemon, as `ipvsadm -L --daemon` shows it.
// Started with a zero MaxLen, Group, Port or TTL, the kernel picks its
// default (the interface's MTU less headers, 224.0.0.81, 8848, 1), and a
// listing shows what it picked.
type SyncDaemon struct {
	State     SyncState
	Interface string // the multicast interface
	SyncID    uint32
	MaxLen    uint16     // UDP payload size
	Group     netip.Addr // IPv4 multicast group
	Port      uint16     // UDP port
	TTL       uint8      // multicast TTL
}

// String is ipvsadm's line for the daemon.
func (d SyncDaemon) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s sync daemon (mcast=%s, syncid=%d", d.State, d.Interface, d.SyncID)
	if d.MaxLen != 0 {
		fmt.Fprintf(&b, ", maxlen=%d", d.MaxLen)
	}
	if d.Group.IsValid() {
		fmt.Fprintf(&b, ", group=%s", d.Group)
	}
	if d.Port != 0 {
		fmt.Fprintf(&b, ", port=%d", d.Port)
	}
	if d.TTL != 0 {
		fmt.Fprintf(&b, ", ttl=%d", d.TTL)
	}
	b.WriteString(")")
	return b.String()
}

// startSyncDaemon starts a sync daemon in the current network namespace,
// as `ipvsadm --start-daemon STATE --mcast-interface IF --syncid ID` (and
// --sync-maxlen, --mcast-group, --mcast-port, --mcast-ttl) does. The kernel
// refuses a second daemon of the same role with EEXIST.
func startSyncDaemon(d SyncDaemon) error {
	attr := nl.NewRtAttr(ipvsCmdAttrDaemon, nil)
	attr.AddRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(d.State)))
	attr.AddRtAttr(ipvsDaemonAttrMcastIfn, nl.ZeroTerminated(d.Interface))
	attr.AddRtAttr(ipvsDaemonAttrSyncID, nl.Uint32Attr(d.SyncID))
	if d.MaxLen != 0 {
		attr.AddRtAttr(ipvsDaemonAttrMaxLen, nl.Uint16Attr(d.MaxLen))
	}
	if d.Group.Is4() {
		attr.AddRtAttr(ipvsDaemonAttrGroup, d.Group.AsSlice())
	}
	if d.Port != 0 {
		attr.AddRtAttr(ipvsDaemonAttrPort, nl.Uint16Attr(d.Port))
	}
	if d.TTL != 0 {
		attr.AddRtAttr(ipvsDaemonAttrTTL, nl.Uint8Attr(d.TTL))
	}
	_, err := ipvsGenl(ipvsCmdNewDaemon, 0, attr)
	if err != nil {
		return fmt.Errorf("start %s: %w", d, err)
	}
	return nil
}

// stopSyncDaemon stops the daemon of one role; the kernel answers ESRCH
// when none runs.
func stopSyncDaemon(state SyncState) error {
	attr := nl.NewRtAttr(ipvsCmdAttrDaemon, nil)
	attr.AddRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(state)))
	if _, err := ipvsGenl(ipvsCmdDelDaemon, 0, attr); err != nil {
		return fmt.Errorf("stop %s sync daemon: %w", state, err)
	}
	return nil
}

// SyncDaemons lists the running sync daemons.
func SyncDaemons() ([]SyncDaemon, error) {
	msgs, err := ipvsGenl(ipvsCmdGetDaemon, unix.NLM_F_DUMP, nil)
	if err != nil {
		return nil, fmt.Errorf("list sync daemons: %w", err)
	}
	var out []SyncDaemon
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			if a.Attr.Type&nl.NLA_TYPE_MASK != ipvsCmdAttrDaemon {
				continue
			}
			inner, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return nil, err
			}
			var d SyncDaemon
			for _, f := range inner {
				switch f.Attr.Type & nl.NLA_TYPE_MASK {
				case ipvsDaemonAttrState:
					d.State = SyncState(nl.NativeEndian().Uint32(f.Value))
				case ipvsDaemonAttrMcastIfn:
					d.Interface = unix.ByteSliceToString(f.Value)
				case ipvsDaemonAttrSyncID:
					d.SyncID = nl.NativeEndian().Uint32(f.Value)
				case ipvsDaemonAttrMaxLen:
					d.MaxLen = nl.NativeEndian().Uint16(f.Value)
				case ipvsDaemonAttrGroup:
					d.Group, _ = netip.AddrFromSlice(f.Value)
				case ipvsDaemonAttrPort:
					d.Port = nl.NativeEndian().Uint16(f.Value)
				case ipvsDaemonAttrTTL:
					d.TTL = f.Value[0]
				}
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// ipvsGenl sends one IPVS generic netlink command in the current network
// namespace and returns the answers' payloads (generic netlink header
// included).
func ipvsGenl(cmd uint8, flags int, attr *nl.RtAttr) ([][]byte, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("IPVS generic netlink family: %w (is ip_vs loaded?)", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_ACK|flags)
	req.AddData(&nl.Genlmsg{Command: cmd, Version: 1})
	if attr != nil {
		req.AddData(attr)
	}
	return req.Execute(unix.NETLINK_GENERIC, 0)
}

// switchSyncDaemon runs the daemon of role want and stops the other one, as
// keepalived's lvs_sync_daemon does on every VRRP transition. Stopping a
// daemon that is not running is not an error; one of the wanted role that
// already runs (left by a crash) is restarted with this configuration.
func switchSyncDaemon(want SyncDaemon) error {
	other := SyncMaster
	if want.State == SyncMaster {
		other = SyncBackup
	}
	err := stopSyncDaemon(other)
	if errors.Is(err, unix.ESRCH) {
		err = nil
	}
	serr := startSyncDaemon(want)
	if errors.Is(serr, unix.EEXIST) {
		if serr = stopSyncDaemon(want.State); serr == nil {
			serr = startSyncDaemon(want)
		}
	}
	return errors.Join(err, serr)
}
