package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// badInput is one hostile or careless input to lvslab check --plan: the
// files it writes under dir and the arguments, the exit code it must
// get, and what its one-line error must say.
type badInput struct {
	name string
	args func(t *testing.T, dir string) []string
	code int
	want string
}

const refDir = "../../fixtures/check/reference/"

// refPair writes the reference pair into dir, box 1's config passed
// through edit, and returns the two paths.
func refPair(t *testing.T, dir string, edit func(string) string) (string, string) {
	t.Helper()
	var paths [2]string
	for i, b := range []string{"db1.conf", "db2.conf"} {
		data, err := os.ReadFile(refDir + b)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if i == 0 && edit != nil {
			text = edit(text)
		}
		paths[i] = filepath.Join(dir, b)
		if err := os.WriteFile(paths[i], []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths[0], paths[1]
}

// edited is a case whose box-1 config has old replaced by new.
func edited(name, old, new string, code int, want string) badInput {
	return badInput{name, func(t *testing.T, dir string) []string {
		a, b := refPair(t, dir, func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("the reference config has no %q", old)
			}
			return strings.Replace(s, old, new, 1)
		})
		return []string{a, b}
	}, code, want}
}

// flagged is a case of the reference pair with extra flags.
func flagged(name string, flags []string, code int, want string) badInput {
	return badInput{name, func(t *testing.T, dir string) []string {
		a, b := refPair(t, dir, nil)
		return append(flags, a, b)
	}, code, want}
}

// special are files no config or rules file can be, each made in dir.
var special = map[string]func(t *testing.T, dir string) string{
	"/dev/zero":          func(*testing.T, string) string { return "/dev/zero" },
	"/dev/urandom":       func(*testing.T, string) string { return "/dev/urandom" },
	"/dev/null":          func(*testing.T, string) string { return "/dev/null" },
	"/proc/self/pagemap": func(*testing.T, string) string { return "/proc/self/pagemap" },
	"/proc/self/environ": func(*testing.T, string) string { return "/proc/self/environ" },
	"/sys file":          func(*testing.T, string) string { return "/sys/class/net/lo/mtu" },
	"a FIFO": func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	},
	"a directory":    func(t *testing.T, dir string) string { return t.TempDir() },
	"a missing file": func(t *testing.T, dir string) string { return filepath.Join(dir, "missing") },
	"a symlink loop": func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "loop")
		os.Symlink(p, p)
		return p
	},
	"2 MB": func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "big")
		os.WriteFile(p, bytes.Repeat([]byte("! a comment line\n"), 2<<20/17+1), 0o644)
		return p
	},
}

// specialWant is what the error must say of each special file.
var specialWant = map[string]string{
	"/dev/zero": "not a regular file", "/dev/urandom": "not a regular file", "/dev/null": "not a regular file",
	"/proc/self/pagemap": "/proc or /sys", "/proc/self/environ": "/proc or /sys", "/sys file": "/proc or /sys",
	"a FIFO": "not a regular file", "a directory": "not a regular file", "a missing file": "no such file",
	"a symlink loop": "too many levels of symbolic links", "2 MB": "more than the 1048576 bytes",
}

func badInputs() []badInput {
	var cases []badInput
	for kind, mk := range special {
		want, includeWant := specialWant[kind], specialWant[kind]
		if kind == "a missing file" {
			includeWant = "matches no file" // a glob
		}
		cases = append(cases,
			badInput{"config is " + kind, func(t *testing.T, dir string) []string {
				_, b := refPair(t, dir, nil)
				return []string{mk(t, dir), b}
			}, 2, want},
			badInput{"include of " + kind, func(t *testing.T, dir string) []string {
				p := mk(t, dir)
				a, b := refPair(t, dir, func(s string) string { return s + "\ninclude " + p + "\n" })
				return []string{a, b}
			}, 2, includeWant},
			badInput{"--iptables " + kind, func(t *testing.T, dir string) []string {
				a, b := refPair(t, dir, nil)
				p := mk(t, dir)
				return []string{"--iptables", p, "--iptables", p, a, b}
			}, 2, want},
		)
	}
	// Values keepalived refuses or would misuse.
	for _, v := range []string{"nan", "NaN", "inf", "-inf", "-1", "0", "1e9", "abc", "0x10", "1,5"} {
		cases = append(cases, edited("advert_int "+v, "advert_int 1", "advert_int "+v, 2, "advert_int: want seconds"))
	}
	for _, v := range []string{"nan", "0", "-5", "+Inf", "1e7"} {
		cases = append(cases, edited("delay_loop "+v, "delay_loop 2", "delay_loop "+v, 2, "delay_loop: want seconds"))
	}
	for _, v := range []string{"0", "256", "-1", "abc", "1.5", "99999999999999999999"} {
		cases = append(cases, edited("priority "+v, "priority 150", "priority "+v, 2, "priority: want a whole number"))
	}
	for _, v := range []string{"0", "256", "-3", "x"} {
		cases = append(cases, edited("virtual_router_id "+v, "virtual_router_id 51", "virtual_router_id "+v, 2, "virtual_router_id: want a whole number"))
	}
	for _, c := range []struct{ old, key string }{
		{"delay_loop 2", "persistence_timeout"}, // 0: no persistence
		{"misc_dynamic\n", "misc_timeout"},      // in MISC_CHECK
	} {
		for _, v := range []string{"nan", "-1", "1e12", "inf"} {
			cases = append(cases, edited(c.key+" "+v, c.old, c.old+"\n "+c.key+" "+v+"\n", 2, c.key+": want"))
		}
	}
	for _, v := range []string{"-1", "nan", "abc"} {
		cases = append(cases, edited("preempt_delay "+v, "advert_int 1", "advert_int 1\n preempt_delay "+v, 2, "preempt_delay: want seconds"))
	}
	cases = append(cases, edited("a port 0 service", "virtual_server 192.168.1.200 3306", "virtual_server 192.168.1.200 0", 2, "port 0, every port of the VIP (persistent): not supported yet"))
	for _, v := range []string{"-1", "70000", "x"} {
		cases = append(cases, edited("weight "+v, "weight 1", "weight "+v, 2, "weight: want"))
	}
	for _, v := range []string{"70000", "-1", "x"} {
		cases = append(cases, edited("real_server port "+v, "real_server 192.168.1.233 3306", "real_server 192.168.1.233 "+v, 2, "real_server"))
	}
	cases = append(cases,
		// keepalived takes a state it does not know for BACKUP, and so
		// does check: box 2 is MASTER then, and its -t warning is shown.
		edited("state FOO", "state MASTER", "state FOO", 1, "unknown state 'FOO', defaulting to BACKUP"),
		edited("no virtual_router_id", "    virtual_router_id 51\n", "", 2, "vrrp_instance VI_1: no virtual_router_id: keepalived refuses it"),
		edited("VIP not an address", "192.168.1.200/24 dev eth0", "192.168.1.999/24 dev eth0", 2, "not an address"),
		edited("port 70000", "virtual_server 192.168.1.200 3306", "virtual_server 192.168.1.200 70000", 2, "virtual_server"),
		edited("duplicate vrid", "virtual_router_id 51\n", "virtual_router_id 51\n}\nvrrp_instance VI_2 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 192.168.1.201\n }\n", 2, "virtual_router_id 51 on eth0 again"),
	)
	// IPv6, said with its line: the lab is IPv4.
	for _, c := range []struct{ old, new string }{
		{"192.168.1.200/24 dev eth0", "2001:db8::200/64 dev eth0"},
		{"192.168.1.200/24 dev eth0", "fe80::1/64 dev eth0"},
		{"real_server 192.168.1.233 3306", "real_server 2001:db8::233 3306"},
		{"real_server 192.168.1.213 3306", "real_server fd00::213 3306"},
		{"virtual_server 192.168.1.200 3306", "virtual_server 2001:db8::200 3306"},
		{"advert_int 1\n", "advert_int 1\n unicast_src_ip 2001:db8::1\n"},
		{"advert_int 1\n", "advert_int 1\n unicast_peer {\n 2001:db8::2\n }\n"},
	} {
		cases = append(cases, edited("IPv6 "+c.new, c.old, c.new, 2, "IPv6: lvslab check runs IPv4 pairs only"))
	}
	// Box addresses that are no host's.
	for _, a := range []string{"0.0.0.0", "255.255.255.255", "224.0.0.18", "127.0.0.1", "192.168.1.200"} {
		cases = append(cases,
			edited("unicast_src_ip "+a, "advert_int 1\n", "advert_int 1\n unicast_src_ip "+a+"\n", 2, a),
			flagged("--addr d1="+a, []string{"--addr", "d1=" + a}, 2, a),
		)
	}
	cases = append(cases, flagged("--addr d1=::1", []string{"--addr", "d1=::1"}, 2, "IPv6"))
	// MACs that are no box's.
	for _, m := range []string{"00:00:5e:00:53:01:02:03", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
		"01:00:5e:00:00:01", "00:00:00:00:00:00", "zz:00:00:00:00:01", "02:00"} {
		cases = append(cases, flagged("--mac "+m, []string{"--mac", "d1=" + m}, 2, "--mac"))
	}
	cases = append(cases, flagged("the same MAC on both", []string{"--mac", "d1=02:00:00:00:00:01", "--mac", "d2=02:00:00:00:00:01"}, 2, "both"))
	// Flags.
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--connections", "-5"}, "--connections -5: want 1 to"},
		{[]string{"--connections", "0"}, "--connections 0"},
		{[]string{"--connections", "100000000"}, "want 1 to"},
		{[]string{"--connections", "x"}, `invalid argument "x" for "--connections"`},
		{[]string{"--events", "steady-state,steady-state"}, "given twice"},
		{[]string{"--events", "bogus"}, "--events"},
		{[]string{"--events", ","}, "--events"},
		{[]string{"--port", "3"}, "want MARK=PORT"},
		{[]string{"--port", "3=70000"}, "want MARK=PORT"},
		{[]string{"--addr", "d3=192.168.1.1"}, "want d1=VALUE"},
		{[]string{"--addr", "d1=banana"}, "--addr"},
		{[]string{"--mac", "d1"}, "want d1=VALUE"},
		{[]string{"--bogus"}, "--help lists its flags"},
		{[]string{"--keep", "mine"}, "want yours or prescribed"},
		{[]string{"--iptables", refDir + "db1.conf"}, "give it once per config"},
		{[]string{"--lab", "../x"}, `lab name "../x"`},
	} {
		cases = append(cases, flagged(strings.Join(c.flags, " "), c.flags, 2, c.want))
	}
	cases = append(cases,
		badInput{"one config", func(t *testing.T, dir string) []string { a, _ := refPair(t, dir, nil); return []string{a} }, 2, "want: lvslab check"},
		badInput{"five configs", func(t *testing.T, dir string) []string { a, b := refPair(t, dir, nil); return []string{a, b, a, b, a} }, 2, "5 configs, so 5 boxes: lvslab check runs two to 4 boxes"},
		badInput{"a config given twice", func(t *testing.T, dir string) []string { a, b := refPair(t, dir, nil); return []string{a, b, a} }, 2, "cannot tell this box's address"},
	)
	// Syntax keepalived would read differently, or lvslab cannot model.
	for _, c := range []struct{ name, old, new, want string }{
		{"an @ conditional", "global_defs {", "@db1 global_defs {", "conditional configuration"},
		{"~SEQ", "global_defs {", "~SEQ(a,1,3) x\nglobal_defs {", "~SEQ"},
		{"an unmatched quote", "router_id db1", "router_id \"db1", "unmatched quote"},
		{"a multi-line definition", "global_defs {", "$X=a \\\nglobal_defs {", "multi-line definition"},
		{"an unclosed block", "global_defs {", "global_defs {\n{", ":5: unexpected {"},
		{"a stray }", "global_defs {", "}\nglobal_defs {", ":4: unexpected }"},
		{"include of nothing", "global_defs {", "include /nonexistent-dir/*.conf\nglobal_defs {", "matches no file"},
		{"include with two words", "global_defs {", "include a b\nglobal_defs {", "include takes one file"},
		{"a bad glob", "global_defs {", "include [\nglobal_defs {", "include"},
		{"ESC bytes", "virtual_router_id 51", "virtual_router_id \x1b[31m51\x1b]0;title\x07", `\x1b`},

		{"a NUL", "router_id db1", "router_id db\x001", ":5: a NUL byte"},
	} {
		cases = append(cases, edited(c.name, c.old, c.new, 2, c.want))
	}
	// An unknown keyword is kept as written, not printed raw.
	cases = append(cases, edited("ESC bytes in a keyword", "advert_int 1", "\x1b[2J 1\n advert_int 1", 1, "keyword(s) kept as written"))
	cases = append(cases,
		badInput{"a BOM", func(t *testing.T, dir string) []string {
			a, b := refPair(t, dir, func(s string) string { return "\uFEFF" + s })
			return []string{a, b}
		}, 2, "byte order mark"},
		badInput{"CR-only line ends", func(t *testing.T, dir string) []string {
			a, b := refPair(t, dir, func(s string) string { return strings.ReplaceAll(s, "\n", "\r") })
			return []string{a, b}
		}, 2, "CR only"},
		badInput{"a 900 KB value", func(t *testing.T, dir string) []string {
			a, b := refPair(t, dir, func(s string) string {
				return strings.Replace(s, "virtual_router_id 51", "virtual_router_id "+strings.Repeat("5", 900<<10), 1)
			})
			return []string{a, b}
		}, 2, "bytes)"},
		badInput{"$X of 100 KB used 400,000 times", func(t *testing.T, dir string) []string {
			a, b := refPair(t, dir, func(s string) string {
				return "$X=" + strings.Repeat("x", 100<<10) + "\n" + strings.Repeat("router_id "+strings.Repeat("$X", 100)+"\n", 4000) + s
			})
			return []string{a, b}
		}, 2, "$ definitions used make the config more than"},
		badInput{"$X of 1 KB used 1,000 times on a line", func(t *testing.T, dir string) []string {
			a, b := refPair(t, dir, func(s string) string {
				return "$X=" + strings.Repeat("x", 1<<10) + "\nglobal_defs {\n router_id " + strings.Repeat("$X", 1000) + "\n}\n" + strings.Repeat("router_id ${X}\n", 4000) + s
			})
			return []string{a, b}
		}, 2, "$ definitions used"},
		badInput{"includes nested 9 deep", func(t *testing.T, dir string) []string {
			for i := range 9 {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("n%d.conf", i)), fmt.Appendf(nil, "include n%d.conf\n", i+1), 0o644)
			}
			os.WriteFile(filepath.Join(dir, "n9.conf"), nil, 0o644)
			a, b := refPair(t, dir, func(s string) string { return s + "include n0.conf\n" })
			return []string{a, b}
		}, 2, "nested more than 8 deep"},
		badInput{"an include loop", func(t *testing.T, dir string) []string {
			os.WriteFile(filepath.Join(dir, "loop.conf"), []byte("include loop.conf\n"), 0o644)
			a, b := refPair(t, dir, func(s string) string { return s + "include loop.conf\n" })
			return []string{a, b}
		}, 2, "loop.conf:1: includes nested more than 8 deep"},
		badInput{"a glob of 100 files", func(t *testing.T, dir string) []string {
			os.Mkdir(filepath.Join(dir, "d"), 0o755)
			for i := range 100 {
				os.WriteFile(filepath.Join(dir, "d", fmt.Sprintf("%03d.conf", i)), nil, 0o644)
			}
			a, b := refPair(t, dir, func(s string) string { return s + "include d/*.conf\n" })
			return []string{a, b}
		}, 2, "more than 64 config files"},
		badInput{"realservers fill the /24", func(t *testing.T, dir string) []string {
			var rs strings.Builder
			for i := 1; i < 255; i++ {
				if i != 200 {
					fmt.Fprintf(&rs, "real_server 192.168.1.%d 3306 {\n}\n", i)
				}
			}
			edit := func(s string) string {
				return strings.Replace(s, "    real_server 192.168.1.233 3306 {", rs.String()+"    real_server 192.168.1.233 3306 {", 1)
			}
			a, _ := refPair(t, dir, edit)
			b := filepath.Join(dir, "db2.conf")
			data, _ := os.ReadFile(b)
			os.WriteFile(b, []byte(edit(string(data))), 0o644)
			return []string{"--addr", "d1=192.168.1.233", "--addr", "d2=192.168.1.213", a, b}
		}, 2, "no address is left for the lab's client"},
	)
	// A fwmark pair whose rules set no mark is no pass: the rule is written.
	for _, rules := range []struct{ name, text string }{
		{"empty", ""},
		{"comments only", "# nothing\n*mangle\nCOMMIT\n"},
		{"another mark", "*mangle\n-A PREROUTING -d 192.168.1.200/32 -p tcp --dport 3306 -j MARK --set-mark 9\nCOMMIT\n"},
		{"the nat table", "*nat\n-A PREROUTING -d 192.168.1.200/32 -p tcp --dport 3306 -j MARK --set-mark 3\nCOMMIT\n"},
	} {
		cases = append(cases, badInput{"fwmark pair, rules " + rules.name, func(t *testing.T, dir string) []string {
			var args []string
			for _, b := range []string{"db1", "db2"} {
				data, _ := os.ReadFile("../../fixtures/check/reference-fixed/" + b + ".conf")
				os.WriteFile(filepath.Join(dir, b+".conf"), data, 0o644)
				os.WriteFile(filepath.Join(dir, b+".rules"), []byte(rules.text), 0o644)
				args = append(args, "--iptables", filepath.Join(dir, b+".rules"))
			}
			return append(args, "--port", "3=3306", "--port", "4=3306", filepath.Join(dir, "db1.conf"), filepath.Join(dir, "db2.conf"))
		}, 1, "no rule of"})
	}
	cases = append(cases, badInput{"rules with a NUL", func(t *testing.T, dir string) []string {
		a, b := refPair(t, dir, nil)
		p := filepath.Join(dir, "bin.rules")
		os.WriteFile(p, []byte("*mangle\n\x00\x01\x02"), 0o644)
		return []string{"--iptables", p, "--iptables", p, a, b}
	}, 2, ":2: a NUL byte"})
	// --write-fixed into what it must not write.
	for _, c := range []struct {
		name string
		dir  func(t *testing.T, dir string) string
		want string
	}{
		{"not empty", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "out")
			os.Mkdir(d, 0o755)
			os.WriteFile(filepath.Join(d, "keep"), nil, 0o644)
			return d
		}, "not empty"},
		{"/etc", func(*testing.T, string) string { return "/etc" }, "a system directory"},
		{"/", func(*testing.T, string) string { return "/" }, "a system directory"},
		{"a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			os.WriteFile(p, nil, 0o644)
			return p
		}, "--write-fixed"},
	} {
		cases = append(cases, badInput{"--write-fixed " + c.name, func(t *testing.T, dir string) []string {
			a, b := refPair(t, dir, nil)
			return []string{"--write-fixed", c.dir(t, dir), a, b}
		}, 2, c.want})
	}
	return cases
}

// TestCheckBadInputs runs lvslab check --plan on every bad input: each
// gets its exit code (2: bad input; 1: something to fix) and a one-line
// error saying what, with no raw control byte; the worst time and memory
// are logged (BENCH.md keeps targets).
func TestCheckBadInputs(t *testing.T) {
	cases := badInputs()
	if len(cases) < 150 {
		t.Errorf("%d bad inputs; the table promises at least 150", len(cases))
	}
	var worstTime time.Duration
	var worstRSS int64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"check", "--plan"}, c.args(t, dir)...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out, errb bytes.Buffer
			cmd := exec.CommandContext(ctx, lvslab, args...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			t0 := time.Now()
			cmd.Run()
			took := time.Since(t0)
			if ctx.Err() != nil {
				t.Fatalf("still running after a minute")
			}
			rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
			worstTime, worstRSS = max(worstTime, took), max(worstRSS, rss)
			stderr := strings.TrimSpace(errb.String())
			if code := cmd.ProcessState.ExitCode(); code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %.2000s\nstderr: %.2000s", code, c.code, out.String(), stderr)
			}
			if c.code == 1 {
				stderr = out.String() // the fix and its notes
			} else if strings.Contains(stderr, "\n") || len(stderr) > 1000 {
				t.Errorf("want one line of at most 1000 bytes, got %d bytes: %.2000q", len(stderr), stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("want %q in: %.2000s", c.want, stderr)
			}
			if strings.ContainsAny(errb.String()+out.String(), "\x1b\x00\x07") {
				t.Errorf("a raw control byte reaches the terminal: %.2000q", errb.String())
			}
		})
	}
	t.Logf("%d bad inputs: worst time %s, worst peak RSS %d MB", len(cases), worstTime.Round(time.Millisecond), worstRSS>>20)
}

// TestCheckQuotesNoForeignFile: a config that includes a file from
// outside its directory (a secret, say) gets its error, its --json and
// its --write-fixed without a byte of that file.
func TestCheckQuotesNoForeignFile(t *testing.T) {
	secretDir, dir := t.TempDir(), t.TempDir()
	secret := filepath.Join(secretDir, "shadow")
	os.WriteFile(secret, []byte("root:SECRETHASH:19000:0:99999:7:::\n"), 0o600)
	for _, c := range []struct {
		where string
		code  int
	}{
		{"advert_int 1\n unicast_peer {\n include " + secret + "\n }\n", 2},
		{"advert_int 1\n", 1}, // at the top level: an unknown keyword, kept
	} {
		a, b := refPair(t, dir, func(s string) string {
			s = strings.Replace(s, "advert_int 1\n", c.where, 1)
			if c.code == 1 {
				s += "include " + secret + "\n"
			}
			return s
		})
		out := filepath.Join(t.TempDir(), "fixed")
		for _, extra := range [][]string{nil, {"--json"}, {"--write-fixed", out}} {
			stdout, stderr, code := cli(t, append(append([]string{"check", "--plan"}, extra...), a, b)...)
			if code != c.code || strings.Contains(stdout+stderr, "SECRETHASH") {
				t.Errorf("%v: exit %d (want %d); the secret must not show:\n%s%s", extra, code, c.code, stdout, stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(out, "d1", "db1.conf")); c.code == 1 && err != nil {
			t.Errorf("--write-fixed wrote no fixed config to look in: %v", err)
		}
		filepath.Walk(out, func(p string, _ os.FileInfo, _ error) error {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte("SECRETHASH")) {
				t.Errorf("--write-fixed wrote the secret to %s", p)
			}
			return nil
		})
	}
}
