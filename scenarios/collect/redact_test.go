package collect

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		config         bool
		where          string
	}{
		{"auth_pass", "  authentication {\n    auth_pass s3cret\n  }\n", "  authentication {\n    auth_pass <redacted>\n  }\n", true, "line 2: auth_pass"},
		{"auth_pass in a script is a word", "echo auth_pass x\n", "echo auth_pass x\n", false, ""},
		{"mysql -p", `misc_path "/etc/keepalived/chk.sh -uroot -ps3cret"` + "\n", `misc_path "/etc/keepalived/chk.sh -uroot -p<redacted>"` + "\n", true, "line 1: a password"},
		{"--password=", "mysqladmin --password=s3cret ping\n", "mysqladmin --password=<redacted> ping\n", false, "line 1: a password"},
		{"--password word", "mysql --password 's3 cret' -e 1\n", "mysql --password <redacted> -e 1\n", false, "line 1: a password"},
		{"password=", "curl 'http://h/?user=a&password=s3cret'\n", "curl 'http://h/?user=a&password=<redacted>'\n", false, "line 1: a password"},
		{"MYSQL_PWD", "MYSQL_PWD=s3cret mysql -e 1\n", "MYSQL_PWD=<redacted> mysql -e 1\n", false, "line 1: a password"},
		{"-p with a space is a port or a prompt", "ipvsadm -A -t 1.2.3.4:80 -p 300\n", "ipvsadm -A -t 1.2.3.4:80 -p 300\n", false, ""},
		{"nothing", "vrrp_instance VI_1 {\n", "vrrp_instance VI_1 {\n", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, where := redact([]byte(tc.in), tc.config)
			if string(got) != tc.want || strings.Join(where, ",") != tc.where {
				t.Errorf("redact(%q): got %q %q, want %q %q", tc.in, got, where, tc.want, tc.where)
			}
			if strings.Count(string(got), "\n") != strings.Count(tc.in, "\n") {
				t.Errorf("redact changed the line count")
			}
		})
	}
}
