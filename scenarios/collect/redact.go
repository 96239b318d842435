package collect

import (
	"fmt"
	"regexp"
	"strings"
)

// Secrets in a keepalived config or a script, redacted in place so that
// every line keeps its number (findings cite file:line): VRRP's
// auth_pass, and the passwords commands take as arguments (mysql -pX,
// --password=X, password=X, the MySQL client's MYSQL_PWD=X).
var (
	authPass = regexp.MustCompile(`^(\s*auth_pass\s+)(\S+)`)
	password = regexp.MustCompile(`(?i)(\s-p|--password[= ]|\b(?:password|passwd|pass|pwd|mysql_pwd)=)("[^"]*"|'[^']*'|[^\s"';]+)`)
)

const redactedWord = "<redacted>"

// redact returns text with its secrets replaced, and where each was
// (line numbers, with what kind). config says the text is keepalived's
// (auth_pass is its keyword).
func redact(text []byte, config bool) ([]byte, []string) {
	lines := strings.SplitAfter(string(text), "\n")
	var where []string
	for i, l := range lines {
		n := l
		if config {
			n = authPass.ReplaceAllString(n, "${1}"+redactedWord)
		}
		n = password.ReplaceAllStringFunc(n, func(m string) string {
			sub := password.FindStringSubmatch(m)
			if sub[2] == redactedWord {
				return m
			}
			return sub[1] + redactedWord
		})
		if n != l {
			kind := "a password"
			if config && authPass.MatchString(l) {
				kind = "auth_pass"
			}
			where = append(where, fmt.Sprintf("line %d: %s", i+1, kind))
			lines[i] = n
		}
	}
	return []byte(strings.Join(lines, "")), where
}
