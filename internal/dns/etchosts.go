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
	h := &etcHosts{byAddr: map[netip.Addr]string{}, byName: map[string][]netip.Addr{}}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return h, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
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
		if _, ok := h.byAddr[a]; !ok {
			h.byAddr[a] = strings.ToLower(strings.TrimSuffix(f[1], "."))
		}
		for _, n := range f[1:] {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			h.byName[n] = append(h.byName[n], a)
		}
	}
	return h, sc.Err()
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
