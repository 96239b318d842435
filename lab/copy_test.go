package lab

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCopyDirSparse: the copy has the same bytes, and its pages of zeros
// take no space.
func TestCopyDirSparse(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	os.MkdirAll(filepath.Join(src, "mysql"), 0o755)
	// 64 pages: data in pages 0, 5 and 63 (the last one partial), zeros
	// elsewhere; and a small file, and an empty one.
	big := make([]byte, 63*pageSize+100)
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range []int{0, 5, 63} {
		for i := p * pageSize; i < min((p+1)*pageSize, len(big)); i++ {
			big[i] = byte(r.Uint32())
		}
	}
	files := map[string][]byte{"ibdata1": big, "mysql/user.MAI": []byte("small"), "empty": nil}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyDir(dst, src); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes (%v), want the %d bytes of the source", name, len(got), err, len(want))
		}
	}
	var st syscall.Stat_t
	syscall.Stat(filepath.Join(dst, "ibdata1"), &st)
	// st_blocks counts 512-byte units: 3 pages of data (plus what a file
	// system rounds up to) against 64 for a dense copy.
	if used := st.Blocks * 512; used > 16*pageSize {
		t.Errorf("ibdata1 copy uses %d bytes on disk, want the 3 data pages (a dense copy would use %d)", used, len(big))
	}
}
