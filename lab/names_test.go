package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnterRefusesWhatIsNoNamespace: entering by a path checks the opened
// file is a namespace (nsfs); a regular file is refused, and so is a name
// that would make a path out of the lab's namespaces.
func TestEnterRefusesWhatIsNoNamespace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "net")
	os.WriteFile(file, nil, 0o644)
	err := doIn(file, func() error { return nil })
	if err == nil || !strings.Contains(err.Error(), "not a namespace") {
		t.Errorf("doIn(a regular file): %v, want refused as not a namespace", err)
	}
	for _, name := range []string{"../../../../proc/self/ns/net", "d1/..", "", "D1"} {
		if err := CheckNodeName(name); !errors.Is(err, ErrBadName) {
			t.Errorf("CheckNodeName(%q): %v, want ErrBadName", name, err)
		}
	}
	for _, name := range []string{"", "../x", "a/b", "UPPER", strings.Repeat("a", 21)} {
		if err := CheckLabName(name); !errors.Is(err, ErrBadName) {
			t.Errorf("CheckLabName(%q): %v, want ErrBadName", name, err)
		}
	}
}
