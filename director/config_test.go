package director

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lvslab/lvslab/director/internal/fake"

	"github.com/lvslab/lvslab/lab/yamlcheck"
)

func TestParseFixtureConfigs(t *testing.T) {
	for _, tc := range []struct {
		file string
		mark uint32
		prio int
	}{{"d1.yaml", 3, 150}, {"d2.yaml", 4, 100}} {
		c, err := ParseConfigFile("../fixtures/director/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if c.Guard.Mark != tc.mark || c.VRRP.Priority != tc.prio || c.VRRP.AdvertInt != time.Second || !*c.VRRP.Preempt {
			t.Errorf("%s: got %+v %+v", tc.file, c.Guard, c.VRRP)
		}
		if got := c.Services[0].Realservers[0].Check; got.Type != "mysql-ping" || got.Rise != 2 || got.Fall != 3 || got.OnFail != "quiesce" {
			t.Errorf("%s: check defaults: got %+v", tc.file, got)
		}
		f := fake.NewIPVS()
		if _, err := Reconcile(f, nil, c.Desired()); err != nil {
			t.Fatal(err)
		}
		got, _ := Render(f)
		want := fmt.Sprintf("FWM %d rr\n  -> 192.168.1.213:3306 Route 1\n  -> 192.168.1.233:3306 Route 1\n", tc.mark)
		if got != want {
			t.Errorf("%s desired table:\n%s\nwant\n%s", tc.file, got, want)
		}
	}
}

const baseConfig = `vrrp:
  interface: eth0
  vrid: 51
  priority: 150
services:
  - name: mysql
    vip: 192.168.1.200
    port: 3306
    realservers:
      - address: 192.168.1.233
      - address: 192.168.1.213
guard:
  mode: fwmark
  mark: 3
`

func TestParseConfigErrors(t *testing.T) {
	if _, err := ParseConfig("c.yaml", []byte(baseConfig)); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", "  vrid: 51", "  vrid: 51\n  colour: red", `c.yaml:4: unknown field "colour"`},
		{"vrid range", "vrid: 51", "vrid: 300", "c.yaml:3: vrrp.vrid: vrid 300: want 1-255"},
		{"priority owner", "priority: 150", "priority: 255", "c.yaml:4: vrrp.priority: priority 255"},
		{"garp_refresh under advert_int", "  vrid: 51", "  vrid: 51\n  garp_refresh: 100ms", "vrrp.garp_refresh: garp_refresh 100ms: want 0 (none) or advert_int (1s) to 1h"},
		{"bad VIP", "vip: 192.168.1.200", "vip: 192.168.1", "c.yaml:7: services[0].vip: bad VIP"},
		{"bad port", "port: 3306", "port: 70000", "c.yaml:8: services[0].port: port 70000"},
		{"scheduler", "    port: 3306", "    port: 3306\n    scheduler: fastest", `services[0].scheduler: unknown scheduler "fastest"`},
		{"forward", "    port: 3306", "    port: 3306\n    forward: magic", `services[0].forward: forward "magic"`},
		{"duplicate realserver", "      - address: 192.168.1.213", "      - address: 192.168.1.233", "c.yaml:11: services[0].realservers[1]: duplicate realserver 192.168.1.233:3306"},
		{"check type", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        check: {type: ping}", `unknown check "ping"`},
		{"timeout over interval", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        check: {interval: 1s, timeout: 2s}", "timeout 2s is longer than the interval 1s"},
		{"fwmark without mark", "  mark: 3\n", "", "guard.mark: fwmark guard needs a mark"},
		{"guard mode", "mode: fwmark", "mode: magic", `c.yaml:13: guard.mode: unknown mode "magic"`},
		{"peer MAC", "  mark: 3", "  mark: 3\n  peer_mac: zz", `guard.peer_mac: bad MAC "zz"`},
		{"two services, one mark", "guard:", "  - name: other\n    vip: 192.168.1.200\n    port: 3307\n    realservers: [{address: 192.168.1.233}]\nguard:", "guard.mode: the fwmark guard covers one service"},
		{"metrics not loopback", "  mark: 3", "  mark: 3\nstatus: {metrics: \"0.0.0.0:9101\"}", `status.metrics: metrics address "0.0.0.0:9101": want a loopback host:port`},
		{"advert_int", "  priority: 150", "  priority: 150\n  advert_int: 50s", "VRRPv3 carries centiseconds"},
		{"negative interval", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        check: {interval: -2s}", "c.yaml:12: services[0].realservers[1].check.interval: interval -2s: want 100ms to 1h"},
		{"interval 1ns", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        check: {interval: 1ns}", "check.interval: interval 1ns: want 100ms to 1h"},
		{"negative timeout", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        check: {timeout: -3s}", "check.timeout: timeout -3s is negative"},
		{"rise", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        check: {rise: -1}", "rise -1, fall 3: want 1-100 each"},
		{"weight over 32 bits", "      - address: 192.168.1.213", "      - address: 192.168.1.213\n        weight: 4294967297", "c.yaml:12: services[0].realservers[1].weight: weight 4294967297: want 0-65535"},
		{"preempt_delay", "  priority: 150", "  priority: 150\n  preempt_delay: -1s", "vrrp.preempt_delay: preempt_delay -1s: want 0 to 1h"},
		{"socket is a file", "  mark: 3", "  mark: 3\nstatus: {socket: /etc/passwd}", "status.socket: socket /etc/passwd: a regular file is there, not a socket"},
		{"socket is a directory", "  mark: 3", "  mark: 3\nstatus: {socket: /etc}", "socket /etc: a directory is there"},
		{"mark outside mask", "  mark: 3", "  mark: 3\n  mask: 0x1", "guard.mask: mark 0x3 has bits outside mask 0x1"},
		{"socket relative", "  mark: 3", "  mark: 3\nstatus: {socket: director.sock}", `socket "director.sock": want an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(baseConfig, tc.old, tc.new, 1)
			if src == baseConfig {
				t.Fatal("case does not change the base config")
			}
			_, err := ParseConfig("c.yaml", []byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, yamlcheck.ErrInvalid) {
				t.Errorf("got %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// FuzzParseConfig: the parser never panics, and what it accepts yields a
// table the fake takes.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(baseConfig))
	f.Add([]byte("vrrp: {interface: eth0, vrid: 1, priority: 1}\nservices: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		if _, err := Reconcile(fake.NewIPVS(), nil, c.Desired()); err != nil {
			t.Errorf("accepted config gives a table the fake refuses: %v", err)
		}
	})
}
