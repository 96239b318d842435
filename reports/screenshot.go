package reports

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/lvslab/lvslab/lab"
)

// Chromium returns the path of a Chromium browser, or "".
func Chromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Screenshot renders dir/index.html in headless Chromium into
// dir/index.png. The flags keep Chromium off the network: this machine's
// network is closed, and nothing here needs it.
func Screenshot(ctx context.Context, dir string) (string, error) {
	browser := Chromium()
	if browser == "" {
		return "", fmt.Errorf("chromium not found: install chromium (make deps)")
	}
	profile, err := os.MkdirTemp("", "lvslab-chromium-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	png, _ := filepath.Abs(filepath.Join(dir, "index.png"))
	page, _ := filepath.Abs(filepath.Join(dir, "index.html"))
	if _, err := os.Stat(page); err != nil { // no report was written: no picture of one
		return "", err
	}
	out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+profile, "--window-size=1300,1400", "--screenshot="+png, "file://"+page).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("chromium screenshot: %w: %s", err, lab.Tail(string(out), 5))
	}
	if _, err := os.Stat(png); err != nil {
		return "", fmt.Errorf("chromium wrote no screenshot: %s", lab.Tail(string(out), 5))
	}
	return png, nil
}
