package director

import (
	"net"
	"net/netip"

	"github.com/goccy/go-yaml"
)

// IPv4 is an IPv4 address in a config, decoded once. Text that is not
// one decodes to the zero Addr and stays in raw, for the validator to
// name with its field and line.
type IPv4 struct {
	netip.Addr
	raw string
}

// UnmarshalYAML keeps any value: validate reports what is not an IPv4
// address (a YAML decoder's own error would name no field).
func (a *IPv4) UnmarshalYAML(b []byte) error {
	a.raw = scalar(b)
	if p, err := netip.ParseAddr(a.raw); err == nil && p.Is4() {
		a.Addr = p
	}
	return nil
}

// bad: something was given, and it is not an IPv4 address.
func (a IPv4) bad() bool { return a.raw != "" && !a.IsValid() }

// MAC is an Ethernet address in a config, decoded as IPv4 is.
type MAC struct {
	net.HardwareAddr
	raw string
}

// UnmarshalYAML keeps any value, as IPv4's does.
func (m *MAC) UnmarshalYAML(b []byte) error {
	m.raw = scalar(b)
	if h, err := net.ParseMAC(m.raw); err == nil && len(h) == 6 {
		m.HardwareAddr = h
	}
	return nil
}

// MarshalYAML writes the address as text.
func (m MAC) MarshalYAML() (any, error) { return m.String(), nil }

func (m MAC) bad() bool { return m.raw != "" && m.HardwareAddr == nil }

// scalar is a YAML value's text: a string, or the value as written.
func scalar(b []byte) string {
	var s string
	if err := yaml.Unmarshal(b, &s); err != nil {
		return string(b)
	}
	return s
}
