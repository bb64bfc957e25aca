package lmtp

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"

	"moat/internal/delivery/smtpclient"
)

// connect opens the connection, trying each address of a TCP host in
// turn as smtp_connect() does, and returns the DSN and reason of the last
// failure when none answers.
func (a *Agent) connect(ctx context.Context, nh Nexthop) (w *smtpclient.Conn, dsn, reason string) {
	d := net.Dialer{Timeout: a.s.connect}
	if nh.Unix {
		// sockaddr_un's sun_path holds 108 bytes with the NUL.
		if len(nh.Dial) >= 108 {
			if a.log != nil {
				a.log.Warning("unix-domain name too long: %s", nh.Dial)
			}
			return nil, "4.3.5", "Server configuration error"
		}
		namaddr := a.s.myhostname + "[" + nh.Path + "]"
		c, err := d.DialContext(ctx, "unix", nh.Dial)
		if err != nil && errors.Is(err, syscall.ENOENT) && nh.Dial != nh.Path {
			// In a chroot jail at queue_directory the absolute path
			// does not exist, but the working directory is the queue
			// directory, where Postfix's lmtp(8) resolves the name.
			if c2, err2 := d.DialContext(ctx, "unix", nh.Path); err2 == nil {
				c, err = c2, nil
			}
		}
		if err != nil {
			return nil, "4.4.1", "connect to " + namaddr + ": " + smtpclient.ConnErr(err)
		}
		return smtpclient.NewConn(c, a.s.myhostname, namaddr, namaddr, a.now()), "", ""
	}
	addrs, why := lookup(ctx, nh.Host)
	if why != "" {
		return nil, "4.4.4", why
	}
	port := strconv.Itoa(nh.Port)
	for _, ip := range addrs {
		namaddr := nh.Host + "[" + ip + "]"
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
		if err != nil {
			dsn, reason = "4.4.1", "connect to "+namaddr+":"+port+": "+smtpclient.ConnErr(err)
			continue
		}
		return smtpclient.NewConn(c, nh.Host, namaddr, namaddr+":"+port, a.now()), "", ""
	}
	return nil, dsn, reason
}

// lookup returns the host's addresses, the host itself when it is one,
// or the reason Postfix logs when there are none. Names go through the
// system resolver (lmtp_host_lookup = native in effect; MX records play
// no part in LMTP).
func lookup(ctx context.Context, host string) (addrs []string, why string) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}, ""
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil || len(ips) == 0 {
		return nil, "Host or domain name not found. Name service error for name=" + host + " type=A: Host not found"
	}
	for _, ip := range ips {
		addrs = append(addrs, ip.IP.String())
	}
	return addrs, ""
}
