package keepalivedconf

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/sys/unix"
)

// ReadFile reads a file lvslab check was handed or a config includes: a
// regular file, opened without blocking (a FIFO or a device is refused,
// not waited on), not of /proc or /sys (whose files say size 0 and may
// not end), and at most max bytes, counted as they are read.
func ReadFile(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err == nil && (fs.Type == unix.PROC_SUPER_MAGIC || fs.Type == unix.SYSFS_MAGIC) {
		return nil, fmt.Errorf("%s is a kernel file of /proc or /sys, not a config", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s is more than the %d bytes a config or rules file may have", path, max)
	}
	return data, nil
}

// utf8BOM is the byte order mark some Windows editors put first.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// misread says where and why keepalived would not read text as it looks
// (line, why), or 0. keepalived reads lines as C strings ending at "\n"
// (lib/parser.c): with CR-only line ends the whole file is one line, a
// byte order mark is part of the first keyword, a NUL ends its line.
func misread(text []byte) (int, string) {
	switch {
	case bytes.HasPrefix(text, utf8BOM):
		return 1, "the file starts with a UTF-8 byte order mark, which keepalived reads as part of the first keyword: save it without one"
	case !bytes.Contains(text, []byte("\n")) && bytes.Count(text, []byte("\r")) > 1:
		return 1, "lines end in CR only, so keepalived reads the file as one line: convert the line ends to LF"
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return bytes.Count(text[:i], []byte("\n")) + 1, "a NUL byte, where keepalived stops reading the line: a binary file, or a broken one"
	}
	return 0, ""
}

// maxQuote is the most of a value an error message quotes; maxMsg the
// longest message.
const (
	maxQuote = 64
	maxMsg   = 400
)

// quote is s as an error message shows a value from a file: quoted, with
// control bytes escaped (nothing in a config reaches the terminal raw),
// and cut to maxQuote bytes.
func quote(s string) string {
	s, cut := cutAt(s, maxQuote)
	return strconv.Quote(s) + cut
}

// Clean is a message with control bytes escaped, cut to a few hundred
// bytes: for text from a file, or from a program that read one.
func Clean(msg string) string {
	if !strings.ContainsFunc(msg, unicode.IsControl) && len(msg) <= maxMsg {
		return msg
	}
	var b strings.Builder
	for _, r := range msg {
		if unicode.IsControl(r) {
			r := strconv.QuoteRune(r)
			b.WriteString(r[1 : len(r)-1])
			continue
		}
		b.WriteRune(r)
	}
	s, cut := cutAt(b.String(), maxMsg)
	return s + cut
}

// cutAt is s cut to n bytes (whole runes) and what says it was cut.
func cutAt(s string, n int) (string, string) {
	if len(s) <= n {
		return s, ""
	}
	return strings.ToValidUTF8(s[:n], ""), fmt.Sprintf("… (%d bytes)", len(s))
}
