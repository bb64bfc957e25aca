package dns

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
)

// etcHosts is a hosts(5) file, read once. Postfix finds the client name
// with getnameinfo(3) and verifies it with getaddrinfo(3), which consult
// nsswitch.conf: the hosts file first, then DNS. Restriction lookups
// (dns_lookup) go to DNS only, so only ClientName uses this.
type etcHosts struct {
	byAddr map[netip.Addr]string   // first (canonical) name per address
	byName map[string][]netip.Addr // lower-case name or alias → addresses
}

// readHosts parses a hosts(5) file; a missing file is an empty table, as
// for the C library.
func readHosts(path string) (*etcHosts, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return parseHosts(nil), nil
	}
	if err != nil {
		return nil, err
	}
	return parseHosts(data), nil
}

// parseHosts reads hosts(5) lines: an address, its canonical name, then
// aliases; "#" starts a comment; a line without a name or with a bad
// address is skipped, as the C library does.
func parseHosts(data []byte) *etcHosts {
	h := &etcHosts{byAddr: map[netip.Addr]string{}, byName: map[string][]netip.Addr{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		for i, n := range f[1:] {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if n == "" || strings.HasSuffix(n, ".") {
				// Not a name (".", "x.."): ClientName would refuse
				// it anyway.
				continue
			}
			if _, ok := h.byAddr[a]; !ok && i == 0 {
				h.byAddr[a] = n
			}
			h.byName[n] = append(h.byName[n], a)
		}
	}
	// A line longer than the scanner's limit ends the file early; what
	// was read so far stands.
	return h
}

// name is addr's canonical name in the file; nil-safe.
func (h *etcHosts) name(a netip.Addr) (string, bool) {
	if h == nil {
		return "", false
	}
	n, ok := h.byAddr[a]
	return n, ok
}

// addrs are name's addresses in the file; nil-safe.
func (h *etcHosts) addrs(name string) ([]netip.Addr, bool) {
	if h == nil {
		return nil, false
	}
	as, ok := h.byName[strings.ToLower(strings.TrimSuffix(name, "."))]
	return as, ok
}
