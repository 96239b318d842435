package director

import (
	"net/netip"
	"time"
)

// State is a VRRP router's state (RFC 5798 section 6.4).
type State int

// States.
const (
	Initialize State = iota
	Backup
	Master
)

func (s State) String() string { return [...]string{"INIT", "BACKUP", "MASTER"}[s] }

// Action is what the state machine asks its caller to do, in order.
type Action int

// Actions.
const (
	SendAdvert     Action = iota // send an advert with our priority
	SendAdvertZero               // send an advert with priority 0: we are leaving
	AddVIP                       // hold the VIPs on the interface (again), send gratuitous ARPs
	DelVIP                       // drop the VIPs from the interface
)

// Machine is the VRRPv3 state machine of one virtual router, as pure
// logic: the caller feeds it events with the time, performs the actions it
// returns, and wakes it at Deadline. No clock, no sockets: table-testable.
type Machine struct {
	Priority  uint8
	AdvertInt time.Duration
	Preempt   bool
	// PreemptDelay: after Start, a higher-priority BACKUP accepts a lower
	// MASTER this long before it preempts (keepalived's preempt_delay).
	PreemptDelay time.Duration
	// Addr is our primary address: ties between equal priorities go to the
	// higher address.
	Addr netip.Addr

	state           State
	started         time.Time
	masterAdvertInt time.Duration
	masterDown      time.Time // BACKUP: when to take over
	nextAdvert      time.Time // MASTER: when to send
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Skew is Skew_Time: ((256 - Priority) * Master_Adver_Interval) / 256.
func (m *Machine) Skew() time.Duration {
	return time.Duration(256-int(m.Priority)) * m.masterAdvertInt / 256
}

// MasterDownInterval is (3 * Master_Adver_Interval) + Skew_Time.
func (m *Machine) MasterDownInterval() time.Duration { return 3*m.masterAdvertInt + m.Skew() }

// Deadline is when the caller must call Tick next; zero in Initialize.
func (m *Machine) Deadline() time.Time {
	switch m.state {
	case Backup:
		return m.masterDown
	case Master:
		return m.nextAdvert
	}
	return time.Time{}
}

// Start leaves Initialize: the address owner (priority 255) becomes
// MASTER at once, anyone else BACKUP.
func (m *Machine) Start(now time.Time) []Action {
	m.started = now
	m.masterAdvertInt = m.AdvertInt
	if m.Priority == 255 {
		return m.becomeMaster(now)
	}
	m.state = Backup
	m.masterDown = now.Add(m.MasterDownInterval())
	return nil
}

// becomeMaster: advertise first, so the other router stands down before
// our gratuitous ARPs (which take a few hundred ms) go out.
func (m *Machine) becomeMaster(now time.Time) []Action {
	m.state = Master
	m.nextAdvert = now.Add(m.AdvertInt)
	return []Action{SendAdvert, AddVIP}
}

// Tick handles the timer: a BACKUP whose master went silent takes over; a
// MASTER sends its periodic advert.
func (m *Machine) Tick(now time.Time) []Action {
	switch {
	case m.state == Backup && !now.Before(m.masterDown):
		return m.becomeMaster(now)
	case m.state == Master && !now.Before(m.nextAdvert):
		m.nextAdvert = now.Add(m.AdvertInt)
		return []Action{SendAdvert}
	}
	return nil
}

// Receive handles an advert from src (already checked by ParseAdvert and
// for our VRID).
func (m *Machine) Receive(now time.Time, a Advert, src netip.Addr) []Action {
	switch m.state {
	case Backup:
		switch {
		case a.Priority == 0:
			// The master is leaving: take over after the skew only.
			m.masterDown = now.Add(m.Skew())
		case !m.Preempt || a.Priority >= m.Priority || now.Before(m.started.Add(m.PreemptDelay)):
			m.masterAdvertInt = a.Interval
			m.masterDown = now.Add(m.MasterDownInterval())
		}
		// Else: a lower-priority master while we preempt: ignore it, and
		// our Master_Down_Timer makes us MASTER.
	case Master:
		switch {
		case a.Priority == 0:
			m.nextAdvert = now.Add(m.AdvertInt)
			return []Action{SendAdvert}
		case a.Priority > m.Priority || a.Priority == m.Priority && src.Compare(m.Addr) > 0:
			m.state = Backup
			m.masterAdvertInt = a.Interval
			m.masterDown = now.Add(m.MasterDownInterval())
			return []Action{DelVIP}
		default:
			// A lower router thinks it is MASTER (both timed out at
			// start, or a partition healed): RFC 5798 discards its advert,
			// but its gratuitous ARPs may have moved the VIP's traffic.
			// Advertise and announce the VIP again, as keepalived does.
			m.nextAdvert = now.Add(m.AdvertInt)
			return []Action{SendAdvert, AddVIP}
		}
	}
	return nil
}

// Shutdown leaves: a MASTER tells the others with priority 0 so the
// BACKUP takes over after its skew, not after Master_Down_Interval.
func (m *Machine) Shutdown() []Action {
	was := m.state
	m.state = Initialize
	if was == Master {
		return []Action{SendAdvertZero, DelVIP}
	}
	return nil
}
