//go:build linux

package maildir

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFull fills a real, tiny tmpfs: the honest way to get ENOSPC from
// the kernel. It needs root (CI runs as root) and mount permission.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	big := strings.Repeat(strings.Repeat("y", 98)+"\r\n", 2000) // 200 KB
	_, err := Deliver(dir, strings.NewReader(big), Options{})
	wantError(t, err, "4.3.0", "deferred", "maildir delivery failed: error writing message: No space left on device")
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("err %v is not ENOSPC", err)
	}
	assertNothing(t, dir)
	// The failed attempt gave its space back: a small message still fits.
	if _, err := Deliver(dir, strings.NewReader("small\r\n"), Options{}); err != nil {
		t.Errorf("small delivery after ENOSPC: %v", err)
	}
}
