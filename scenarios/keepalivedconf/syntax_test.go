package keepalivedconf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// write puts files (name -> text) in a temporary directory and returns it.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestGrammar: a config written the way people write them: includes by
// glob relative to the including file, definitions, comments of both
// kinds, quoted words, braces on the keyword's line, alone, or closing
// two blocks at once, a block opened on the next line.
func TestGrammar(t *testing.T) {
	dir := write(t, map[string]string{
		"keepalived.conf": `! the reference two-box MySQL pair
$VIP=192.168.1.200
global_defs { router_id DB1 }   # inline block
include conf.d/*.conf
vrrp_instance VI_1
{
    state MASTER
    interface eth0 # trailing comment
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        ${VIP}/24 dev eth0 label eth0:1
    }
    unicast_peer {
        192.168.1.213
    }
    notify_master "/bin/logger master $HOSTNAME"}
`,
		"conf.d/mysql.conf": `virtual_server $VIP 3306 {
    delay_loop 2
    lb_algo wlc
    lb_kind DR
    persistence_timeout 300
    protocol TCP
    real_server 192.168.1.233 3306 {
        weight 2
        MISC_CHECK {
            misc_path "/etc/keepalived/check_slave.pl 192.168.1.233"
            misc_dynamic
        }
    }
    real_server 192.168.1.213 3306 {
        TCP_CHECK { connect_timeout 3 }
        notify_up /bin/true
    }
}
`,
	})
	c, err := Load(filepath.Join(dir, "keepalived.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Global.RouterID != "DB1" || len(c.Files) != 2 {
		t.Errorf("global %+v, files %v", c.Global, c.Files)
	}
	in := c.Instances[0]
	vip := netip.MustParsePrefix("192.168.1.200/24")
	if in.State != "MASTER" || in.Interface != "eth0" || in.VRID != 51 || in.Priority != 150 || in.AdvertInt != time.Second ||
		len(in.VIPs) != 1 || in.VIPs[0].Prefix != vip || in.VIPs[0].Label != "eth0:1" || in.UnicastPeers[0].String() != "192.168.1.213" {
		t.Errorf("instance %+v", in)
	}
	if got := in.Notify["notify_master"]; got != "/bin/logger master $HOSTNAME" {
		t.Errorf("notify_master %q: an undefined $NAME stays as written", got)
	}
	vs := c.VirtualServers[0]
	if vs.Key() != "TCP 192.168.1.200:3306" || vs.LBAlgo != "wlc" || vs.LBKind != "DR" || vs.Persistence != 300 || len(vs.RealServers) != 2 {
		t.Fatalf("virtual server %+v", vs)
	}
	if rs := vs.RealServers[0]; rs.Weight != 2 || rs.Checks[0].MiscPath != "/etc/keepalived/check_slave.pl 192.168.1.233" || !rs.Checks[0].MiscDynamic {
		t.Errorf("real server %+v %+v", rs, rs.Checks[0])
	}
	if rs := vs.RealServers[1]; rs.Weight != 1 || rs.Checks[0].Kind != TCPCheck || rs.Checks[0].ConnectTimeout != 3*time.Second {
		t.Errorf("real server %+v", rs)
	}
	if len(c.Unmodelled) != 1 {
		t.Fatalf("unmodelled %+v, want notify_up only", c.Unmodelled)
	}
	if u := c.Unmodelled[0]; u.Key != "notify_up" || !strings.HasSuffix(u.Pos.File, "conf.d/mysql.conf") || u.Pos.Line != 16 {
		t.Errorf("unmodelled %+v: want notify_up at conf.d/mysql.conf:16", u)
	}
}

// TestBadInput: each mistake is refused with its file and line.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"conditional", "@high vrrp_instance X {\n}\n", "c.conf:1: conditional configuration (@high)"},
		{"undefined", "virtual_server $VIP 80 {\n}\n", "c.conf:1: virtual_server: not an address: \"$VIP\""},
		{"unclosed", "vrrp_instance X {\n state MASTER\n", "c.conf:1: vrrp_instance: block not closed"},
		{"stray close", "}\n", "c.conf:1: unexpected }"},
		{"quote", "global_defs {\n router_id \"x\n}\n", "c.conf:2: unmatched quote"},
		{"priority", "vrrp_instance X {\n priority 300\n}\n", "c.conf:2: priority: want a whole number from 1 to 255, got \"300\""},
		{"address", "virtual_server 10.0.0.300 80 {\n}\n", "c.conf:1: virtual_server: not an address"},
		{"group", "virtual_server group G {\n}\n", "c.conf:1: virtual_server group G: no virtual_server_group"},
		{"include", "include nothing/*.conf\n", "c.conf:1: include nothing/*.conf matches no file"},
		{"seq", "~SEQ(n, 1, 3) x\n", "c.conf:1: ~SEQ is not supported"},
		{"depth", strings.Repeat("a {\n", MaxDepth+2) + strings.Repeat("}\n", MaxDepth+2), "blocks nested more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, map[string]string{"c.conf": tc.text})
			_, err := Load(filepath.Join(dir, "c.conf"))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// TestLimits: a file too big and an include loop are refused, not read
// until memory runs out.
func TestLimits(t *testing.T) {
	dir := write(t, map[string]string{
		"big.conf":  strings.Repeat("# padding\n", MaxFileBytes/10+1),
		"loop.conf": "include loop.conf\n",
	})
	if _, err := Load(filepath.Join(dir, "big.conf")); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("big file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "loop.conf")); err == nil || !strings.Contains(err.Error(), "includes nested more than 8 deep") {
		t.Errorf("include loop: %v", err)
	}
}

// FuzzParse: no input makes the parser panic or hang, and what parses
// models without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"vrrp_instance VI_1 {\n state MASTER\n virtual_ipaddress {\n 10.0.0.1/24 dev eth0\n }\n}\n",
		"virtual_server fwmark 3 {\n real_server 10.0.0.2 80 {\n HTTP_GET { url { path / } }\n }\n}\n",
		"$A=1\nglobal_defs { router_id ${A} }\n",
		"virtual_server_group G {\n 10.0.0.1-9 80\n fwmark 2\n}\nvirtual_server group G {\n}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		nodes, err := Parse("fuzz.conf", text)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not an ErrInvalid: %v", err)
			}
			return
		}
		if _, err := Model(nodes); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("model error not an ErrInvalid: %v", err)
		}
	})
}

// An include by an absolute path under /etc/keepalived reads the copy
// beside the main file, where there is one: the box's, not this
// machine's.
func TestIncludeFromConfigDir(t *testing.T) {
	dir := write(t, map[string]string{
		"keepalived.conf":   "include " + ConfigDir + "conf.d/*.conf\n",
		"conf.d/vs.conf":    "virtual_server 10.0.0.1 80 {\n}\n",
		"other/unused.conf": "global_defs {\n}\n",
	})
	tr, err := ParseFile(filepath.Join(dir, "keepalived.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "conf.d/*.conf"); len(tr.Includes) != 1 || tr.Includes[0].Resolved != want || tr.Includes[0].Pattern != ConfigDir+"conf.d/*.conf" {
		t.Errorf("includes %+v, want %s resolved to %s", tr.Includes, ConfigDir+"conf.d/*.conf", want)
	}
	if len(tr.Files) != 2 || tr.Files[1] != filepath.Join(dir, "conf.d/vs.conf") {
		t.Errorf("files %q, want the main file and conf.d/vs.conf beside it", tr.Files)
	}
}

// virtual_ipaddress_excluded's addresses are VIPs of the instance too:
// they move with it, only not in its adverts.
func TestExcludedVIPs(t *testing.T) {
	nodes, err := Parse("t.conf", []byte("vrrp_instance VI_1 {\n virtual_ipaddress {\n  10.0.0.1\n }\n virtual_ipaddress_excluded {\n  10.0.0.2/24 dev eth0\n }\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Model(nodes)
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Instances[0].VIPs; len(v) != 2 || v[1].Prefix.String() != "10.0.0.2/24" || v[1].Dev != "eth0" {
		t.Errorf("VIPs %+v, want 10.0.0.1 and 10.0.0.2/24 dev eth0", v)
	}
}

// TestAsKeepalivedReads: values keepalived 2.2.7 reads otherwise than
// they look (keepalived -t says so for each): a state it does not know is
// BACKUP; a MASTER's nopreempt and preempt_delay are cleared, and so is
// preempt_delay beside nopreempt; a MASTER without a priority is the
// address owner (255), and an instance with 255 and no state is MASTER;
// lb_kind and protocol are case-sensitive and case-insensitive; no
// protocol is UDP; no scheduler is wlc; a DR real server's port is the
// virtual server's.
func TestAsKeepalivedReads(t *testing.T) {
	dir := write(t, map[string]string{"c.conf": `vrrp_instance A {
 state master
 nopreempt
 preempt_delay 5
}
vrrp_instance B {
 state MASTER
 nopreempt
 preempt_delay 5
}
vrrp_instance C {
 state SLAVE
 preempt_delay 5
}
vrrp_instance D {
 priority 255
}
virtual_server 10.0.0.1 80 {
 lb_kind dr
}
virtual_server 10.0.0.1 81 {
 lb_kind DR
 protocol tcp
 real_server 10.0.0.11 8081 {
 }
}
`})
	c, err := Load(filepath.Join(dir, "c.conf"))
	if err != nil {
		t.Fatal(err)
	}
	a, b, cc, d := c.Instances[0], c.Instances[1], c.Instances[2], c.Instances[3]
	v0, v1 := c.VirtualServers[0], c.VirtualServers[1]
	got := fmt.Sprint(a.State, a.NoPreempt, a.PreemptDelay, b.State, b.NoPreempt, b.PreemptDelay, cc.State, cc.PreemptDelay,
		v0.LBKind, v0.LBKindUnknown, v0.Protocol, v0.LBAlgo, v1.LBKind, v1.Protocol, b.Priority, a.Priority, d.State, v1.RealServers[0].Port)
	if want := fmt.Sprint("BACKUP", true, time.Duration(0), "MASTER", false, time.Duration(0), "BACKUP", 5*time.Second,
		"NAT", "dr", "UDP", "wlc", "DR", "TCP", 255, 100, "MASTER", 81); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
