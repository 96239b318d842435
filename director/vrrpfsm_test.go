package director

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	t0     = time.Unix(1000, 0)
	d1Addr = netip.MustParseAddr("192.168.1.233")
	d2Addr = netip.MustParseAddr("192.168.1.213")
)

func advert(prio uint8) Advert { return Advert{VRID: 51, Priority: prio, Interval: time.Second} }

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one event fed to a machine and what must follow.
type step struct {
	at      time.Duration
	recv    *Advert // an advert from src, else a Tick
	src     netip.Addr
	shut    bool
	want    []Action
	state   State
	wantDue time.Duration // the next Deadline after the step, from t0; 0: not checked
}

func TestVRRPStateMachine(t *testing.T) {
	high, low, zero := advert(150), advert(50), advert(0)
	// Priority 100, advert_int 1s: skew = 156/256 s = 609.375 ms, so
	// Master_Down_Interval = 3.609375 s.
	down := 3*time.Second + 609375*time.Microsecond
	skew := 609375 * time.Microsecond
	for _, tc := range []struct {
		name    string
		m       Machine
		startAt []Action
		steps   []step
	}{
		{"silent master: BACKUP takes over after Master_Down_Interval", Machine{Priority: 100, AdvertInt: time.Second, Preempt: true}, nil, []step{
			{at: down - time.Millisecond, state: Backup, wantDue: down},
			{at: down, want: []Action{SendAdvert, AddVIP}, state: Master, wantDue: down + time.Second},
			{at: down + time.Second, want: []Action{SendAdvert}, state: Master},
		}},
		{"higher master's adverts keep a BACKUP down", Machine{Priority: 100, AdvertInt: time.Second, Preempt: true}, nil, []step{
			{at: 3 * time.Second, recv: &high, src: d1Addr, state: Backup, wantDue: 3*time.Second + down},
			{at: down, state: Backup},
		}},
		{"preempt: a lower master is ignored, then overtaken", Machine{Priority: 100, AdvertInt: time.Second, Preempt: true}, nil, []step{
			{at: time.Second, recv: &low, src: d1Addr, state: Backup, wantDue: down},
			{at: down, want: []Action{SendAdvert, AddVIP}, state: Master},
		}},
		{"nopreempt: a lower master is accepted", Machine{Priority: 100, AdvertInt: time.Second}, nil, []step{
			{at: 3 * time.Second, recv: &low, src: d1Addr, state: Backup, wantDue: 3*time.Second + down},
		}},
		{"preempt delay: a lower master is accepted for a while", Machine{Priority: 100, AdvertInt: time.Second, Preempt: true, PreemptDelay: 5 * time.Second}, nil, []step{
			{at: 3 * time.Second, recv: &low, src: d1Addr, state: Backup, wantDue: 3*time.Second + down},
			{at: 6 * time.Second, recv: &low, src: d1Addr, state: Backup, wantDue: 3*time.Second + down}, // ignored now
			{at: 3*time.Second + down, want: []Action{SendAdvert, AddVIP}, state: Master},
		}},
		{"priority 0 from the leaving master: take over after the skew", Machine{Priority: 100, AdvertInt: time.Second, Preempt: true}, nil, []step{
			{at: time.Second, recv: &zero, src: d1Addr, state: Backup, wantDue: time.Second + skew},
			{at: time.Second + skew, want: []Action{SendAdvert, AddVIP}, state: Master},
		}},
		{"the address owner (255) starts as MASTER", Machine{Priority: 255, AdvertInt: time.Second}, []Action{SendAdvert, AddVIP}, []step{
			{at: time.Second, want: []Action{SendAdvert}, state: Master},
		}},
		{"MASTER yields to a higher priority", Machine{Priority: 100, AdvertInt: time.Second}, nil, []step{
			{at: down, want: []Action{SendAdvert, AddVIP}, state: Master},
			{at: down + time.Second, recv: &high, src: d1Addr, want: []Action{DelVIP}, state: Backup, wantDue: 2*down + time.Second},
		}},
		{"MASTER yields to equal priority from a higher address", Machine{Priority: 150, AdvertInt: time.Second, Addr: d2Addr, Preempt: true}, nil, []step{
			{at: 4 * time.Second, want: []Action{SendAdvert, AddVIP}, state: Master},
			{at: 4*time.Second + 100*time.Millisecond, recv: &high, src: netip.MustParseAddr("192.168.1.1"), want: []Action{SendAdvert, AddVIP}, state: Master},
			{at: 4*time.Second + 200*time.Millisecond, recv: &high, src: d1Addr, want: []Action{DelVIP}, state: Backup},
		}},
		{"MASTER re-announces over a lower router claiming MASTER", Machine{Priority: 150, AdvertInt: time.Second}, nil, []step{
			{at: 4 * time.Second, want: []Action{SendAdvert, AddVIP}, state: Master},
			{at: 4*time.Second + 10*time.Millisecond, recv: &low, src: d2Addr, want: []Action{SendAdvert, AddVIP}, state: Master},
		}},
		{"MASTER answers a priority 0 advert at once", Machine{Priority: 100, AdvertInt: time.Second}, nil, []step{
			{at: down, want: []Action{SendAdvert, AddVIP}, state: Master},
			{at: down + 100*time.Millisecond, recv: &zero, src: d1Addr, want: []Action{SendAdvert}, state: Master, wantDue: down + 1100*time.Millisecond},
		}},
		{"graceful shutdown of a MASTER", Machine{Priority: 100, AdvertInt: time.Second}, nil, []step{
			{at: down, want: []Action{SendAdvert, AddVIP}, state: Master},
			{at: down + time.Millisecond, shut: true, want: []Action{SendAdvertZero, DelVIP}, state: Initialize},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			if got := m.Start(t0); !slices.Equal(got, tc.startAt) {
				t.Fatalf("start: got %v, want %v", got, tc.startAt)
			}
			for i, s := range tc.steps {
				var got []Action
				switch {
				case s.shut:
					got = m.Shutdown()
				case s.recv != nil:
					got = m.Receive(at(s.at), *s.recv, s.src)
				default:
					got = m.Tick(at(s.at))
				}
				if !slices.Equal(got, s.want) || m.State() != s.state {
					t.Errorf("step %d at %s: got %v in %s, want %v in %s", i, s.at, got, m.State(), s.want, s.state)
				}
				if s.wantDue != 0 && !m.Deadline().Equal(at(s.wantDue)) {
					t.Errorf("step %d: next deadline %s, want %s", i, m.Deadline().Sub(t0), s.wantDue)
				}
			}
		})
	}
}
