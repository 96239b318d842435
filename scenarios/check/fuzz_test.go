package check

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzPlan runs the whole of lvslab check --plan but the terminal on two
// configs and one rules file for both boxes: LoadPair, Derive, Prescribe,
// Runnable. Any input may be refused with an error; none may panic or
// hang. Seeded with the fixture pairs and the shapes of the bad inputs
// TestCheckBadInputs (cmd/lvslab) runs through the CLI.
func FuzzPlan(f *testing.F) {
	read := func(p string) string {
		data, err := os.ReadFile(fixtures + p)
		if err != nil {
			f.Fatal(err)
		}
		return string(data)
	}
	ref1, ref2 := read("reference/db1.conf"), read("reference/db2.conf")
	fix1, fix2, rules := read("reference-fixed/db1.conf"), read("reference-fixed/db2.conf"), read("reference-fixed/db1.rules")
	f.Add(ref1, ref2, "")
	f.Add(fix1, fix2, rules)
	f.Add(read("asymmetric/db1.conf"), read("asymmetric/db2.conf"), "")
	for _, bad := range []string{
		"vrrp_instance V {\n virtual_ipaddress {\n 2001:db8::1/64\n }\n}\n",
		"vrrp_instance V {\n advert_int nan\n}\n",
		"vrrp_instance V {\n unicast_src_ip 0.0.0.0\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n",
		"$X=aaaaaaaa\nvrrp_instance $X$X$X$X {\n}\n",
		"\uFEFFglobal_defs {\n}\n",
		"vrrp_instance V {\r virtual_ipaddress {\r 10.0.0.1\r }\r}\r",
		"virtual_server fwmark 0 {\n real_server 10.0.0.2 0 {\n }\n}\n",
	} {
		f.Add(bad, ref2, "")
	}
	f.Add(fix1, fix2, "*mangle\n-A PREROUTING -d ::1/128 -p tcp --dport 1 -j MARK --set-mark 3\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, conf1, conf2, rules string) {
		dir := t.TempDir()
		paths := make([]string, 2)
		for i, c := range []string{conf1, conf2} {
			paths[i] = filepath.Join(dir, []string{"d1.conf", "d2.conf"}[i])
			if err := os.WriteFile(paths[i], []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		rulePaths := make([]string, 2)
		if rules != "" {
			rulePaths[0] = filepath.Join(dir, "rules")
			rulePaths[1] = rulePaths[0]
			if err := os.WriteFile(rulePaths[0], []byte(rules), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		p, err := LoadPair(paths, rulePaths)
		if err != nil {
			return
		}
		pl, err := Derive(p)
		if err != nil {
			return
		}
		if _, err := Prescribe(p, pl); err != nil {
			return
		}
		pl.Runnable()
	})
}
