package asuser

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadPrefix: the whole content when it fits the limit, exactly limit
// bytes otherwise (the rest stays in the reader), whatever the reader's
// read sizes, and a read error as it came.
func TestReadPrefix(t *testing.T) {
	long := strings.Repeat("x", 20000)
	for _, tc := range []struct {
		name, in string
		limit    int
		want     string
	}{
		{"empty", "", 10, ""},
		{"short", "abc", 10, "abc"},
		{"exact", "abcdefghij", 10, "abcdefghij"},
		{"over", "abcdefghijk", 10, "abcdefghij"},
		{"grows", long, 30000, long},
		{"grows over", long, 9000, long[:9000]},
	} {
		for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in)), iotest.DataErrReader(strings.NewReader(tc.in))} {
			got, err := readPrefix(r, tc.limit)
			if err != nil || string(got) != tc.want {
				t.Errorf("%s (%T): %d bytes, %v; want %d bytes", tc.name, r, len(got), err, len(tc.want))
			}
		}
	}
	boom := errors.New("boom")
	if _, err := readPrefix(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 10); !errors.Is(err, boom) {
		t.Errorf("read error: %v, want boom", err)
	}
}
