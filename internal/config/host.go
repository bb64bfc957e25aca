package config

import (
	"net"
	"os"
	"strings"
)

// hostName is the myhostname default: the system host name, with
// ".localdomain" appended when it has no dot, as Postfix does so the name is
// always fully qualified (postconf(5) myhostname).
func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	if !strings.Contains(h, ".") {
		h += ".localdomain"
	}
	return h
}

// domainOf is the mydomain default: myhostname minus its first label, or
// "localdomain" when myhostname has no dot (postconf(5) mydomain).
func domainOf(host string) string {
	if _, rest, ok := strings.Cut(host, "."); ok && rest != "" {
		return rest
	}
	return "localdomain"
}

// localNetworks is the mynetworks default: the networks of this host's
// interface addresses according to mynetworks_style (postconf(5)
// mynetworks_style), IPv4 first, then IPv6 in bracketed form, each network
// once, as Postfix lists them. inetProtocols restricts the families;
// loopbackOnly keeps only loopback interfaces (inet_interfaces =
// loopback-only).
func localNetworks(style, inetProtocols string, loopbackOnly bool) string {
	want4, want6 := true, true
	switch p := strings.Join(SplitList(strings.ToLower(inetProtocols)), " "); p {
	case "ipv4":
		want6 = false
	case "ipv6":
		want4 = false
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var v4, v6 []string
	seen := map[string]bool{}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || loopbackOnly && ifc.Flags&net.FlagLoopback == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip4 := ipn.IP.To4()
			ones, bits := ipn.Mask.Size()
			switch strings.ToLower(style) {
			case "host":
				ones = bits
			case "class":
				if ip4 != nil {
					switch {
					case ip4[0] < 128:
						ones = 8
					case ip4[0] < 192:
						ones = 16
					case ip4[0] < 224:
						ones = 24
					default:
						ones = 32
					}
				}
			}
			mask := net.CIDRMask(ones, bits)
			var s string
			if ip4 != nil {
				if !want4 {
					continue
				}
				s = (&net.IPNet{IP: ip4.Mask(mask), Mask: mask}).String()
			} else {
				if !want6 {
					continue
				}
				s = "[" + ipn.IP.Mask(mask).String() + "]/" + itoa(ones)
			}
			if seen[s] {
				continue
			}
			seen[s] = true
			if ip4 != nil {
				v4 = append(v4, s)
			} else {
				v6 = append(v6, s)
			}
		}
	}
	return strings.Join(append(v4, v6...), " ")
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
