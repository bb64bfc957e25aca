package local

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"moat/internal/config"
)

// macros are the per-recipient values local(8) substitutes in
// forward_path, luser_relay and command_execution_directory (postconf(5)
// forward_path: $user, $home, $shell, $recipient, $extension, $domain,
// $local, $recipient_delimiter).
type macros struct {
	user, home, shell, recipient, extension, domain, local, delimiter string
}

func (m macros) lookup(name string) string {
	switch name {
	case "user":
		return m.user
	case "home":
		return m.home
	case "shell":
		return m.shell
	case "recipient":
		return m.recipient
	case "extension":
		return m.extension
	case "domain":
		return m.domain
	case "local":
		return m.local
	case "recipient_delimiter":
		return m.delimiter
	}
	return ""
}

// expandLocal expands template with m, every substituted value passed
// through filter: characters outside it become '_' (postconf(5)
// forward_expansion_filter: a recipient address must not put shell or
// path syntax into a file name or command). An empty value counts as
// undefined, so ${extension?...} is empty for a recipient without one.
// The status has config.StatError for a syntax error.
func expandLocal(template string, m macros, filter string) (string, int) {
	e := config.Expander{Lookup: func(name string) (string, bool) {
		v := m.lookup(name)
		if v == "" {
			return "", false
		}
		return filterChars(v, filter), true
	}}
	return e.Expand(template)
}

// checkTemplate expands template with every macro set, to find syntax
// errors when the agent starts rather than per recipient.
func checkTemplate(template string) (string, int) {
	m := macros{"u", "/h", "/s", "r@d", "e", "d", "l", "+"}
	return expandLocal(template, m, "")
}

// filterChars replaces each byte of s not in allowed with '_'; an empty
// allowed keeps s as it is.
func filterChars(s, allowed string) string {
	if allowed == "" {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if strings.IndexByte(allowed, c) < 0 {
			b[i] = '_'
		}
	}
	return string(b)
}

// splitRecipient lowercases addr's local part and splits it as local(8)
// does: local part and domain at the rightmost '@', then the user and the
// extension at the first recipient_delimiter character (any of them,
// postconf(5) recipient_delimiter). With owner_request_special and "-"
// among the delimiters, owner-list and list-request are not split.
// delim is the delimiter character found ("" when none).
func splitRecipient(addr, delimiters string, ownerSpecial bool) (local, domain, user, ext, delim string) {
	local = strings.ToLower(addr)
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local, domain = local[:i], local[i+1:]
	}
	user = local
	if delimiters == "" {
		return
	}
	if ownerSpecial && strings.Contains(delimiters, "-") &&
		(strings.HasPrefix(local, "owner-") || strings.HasSuffix(local, "-request")) {
		return
	}
	// Postfix's split_addr: the first delimiter character after the
	// first byte (an address that starts with one has no user part).
	if i := strings.IndexAny(local[min(1, len(local)):], delimiters); i >= 0 {
		i += min(1, len(local))
		user, ext, delim = local[:i], local[i+1:], local[i:i+1]
		// local(8): an extension with '/' could reach outside the
		// home directory through $extension in forward_path.
		if strings.Contains(ext, "/") {
			user, ext, delim = local, "", ""
		}
	}
	return
}

// deliveredTo returns the Delivered-To: addresses in the message's header
// section, lowercased, for mail loop detection (local(8) "MAIL
// FORWARDING"). Only the header is read: the body may quote anything.
func deliveredTo(r io.Reader) (map[string]bool, error) {
	seen := map[string]bool{}
	br := bufio.NewReaderSize(r, 4096)
	var cur []byte
	flush := func() {
		if len(cur) == 0 {
			return
		}
		if name, value, ok := bytes.Cut(cur, []byte(":")); ok &&
			strings.EqualFold(string(bytes.TrimRight(name, " \t")), "delivered-to") {
			seen[strings.ToLower(strings.TrimSpace(unfold(string(value))))] = true
		}
		cur = cur[:0]
	}
	const maxHeader = 1 << 16 // a header longer than this is kept in part
	for {
		line, err := readLine(br, maxHeader)
		if len(line) == 0 && err != nil {
			flush()
			if err == io.EOF {
				return seen, nil
			}
			return nil, err
		}
		body := bytes.TrimRight(line, "\r\n")
		if len(body) == 0 {
			// The end of the header section: the body may quote anything.
			flush()
			return seen, nil
		}
		if body[0] == ' ' || body[0] == '\t' {
			if len(cur) < maxHeader {
				cur = append(cur, body...)
			}
		} else {
			flush()
			cur = append(cur, body...)
		}
		if err != nil {
			flush()
			if err == io.EOF {
				return seen, nil
			}
			return nil, err
		}
	}
}

// readLine reads one line, keeping at most limit bytes of it: a hostile
// message's endless line costs time, not memory.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if room := limit - len(buf); room > 0 {
			buf = append(buf, chunk[:min(len(chunk), room)]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return buf, err
	}
}

func unfold(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
