package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{
		"mail from:<wietse@porcupine.org>",
		`mail from:<"wietse venema"@porcupine.org ( ("wietse ) venema") )>`,
		`mail to:<wietse@["stuff]>`, `a\`, "<<<>>", `"\"`, "rcpt to: <a> NOTIFY=NEVER",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		toks := Tokenize(line)
		total := 0
		for i, tok := range toks {
			if tok.Value == "" {
				t.Fatalf("empty token %d in %q", i, line)
			}
			if tok.Type == TokenError && i != len(toks)-1 {
				t.Fatalf("error token %d is not the last in %q", i, line)
			}
			total += len(tok.Value)
		}
		if total > len(line) {
			t.Fatalf("tokens longer than the line %q", line)
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x+2B AUTH=<>",
		"RCPT TO:<@a,@b:u@d> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u+40d",
		`RCPT TO:<"x y"@[1.2.3.4]> ORCPT=utf-8;j\x{F6}r@x`,
		`MAIL FROM:"a b" <c@d> (comment)`, "MAIL FROM:<>", "RCPT TO:<a(b>",
	} {
		f.Add(s)
	}
	o := Options{SMTPUTF8: true, DSN: true, Auth: true, BinaryMIME: true, SizeLimit: 1000}
	f.Fuzz(func(t *testing.T, line string) {
		toks := Tokenize(line)
		for _, strict := range []bool{false, true} {
			o.Strict = strict
			m, err1 := ParseMail(toks, o)
			r, err2 := ParseRcpt(toks, o)
			for _, err := range []error{err1, err2} {
				if err == nil {
					continue
				}
				rep, ok := ReplyOf(err)
				if !ok || rep.Code < 500 || rep.Code > 555 || rep.Enhanced == "" {
					t.Fatalf("%q: bad refusal %v", line, err)
				}
			}
			if err1 == nil {
				roundTrip(t, m.From)
			}
			if err2 == nil {
				roundTrip(t, r.To)
				if r.To.Null() {
					t.Fatalf("%q: null recipient accepted", line)
				}
			}
		}
	})
}

// roundTrip checks that an accepted address, quoted again and sent back in
// <>, parses to the same address: what moat relays is what it received.
func roundTrip(t *testing.T, p Path) {
	t.Helper()
	d := p.Domain()
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
			return // domain literals and odd domains are not re-quoted
		}
	}
	if p.Local() == "" || p.Null() || strings.ContainsAny(p.Addr, "\x00") {
		return
	}
	q := p.Quoted()
	m, err := ParseMail(Tokenize("MAIL FROM:<"+q+">"), Options{Strict: true})
	if err != nil || m.From.Addr != p.Addr {
		t.Fatalf("address %q quoted as %q reparsed as %q (%v)", p.Addr, q, m.From.Addr, err)
	}
}

// dataModel is the specification ReadData must meet: the message ends at
// the first ".\r\n" at the very start of the data or right after a CRLF;
// lines are unstuffed and stored with CRLF.
// dataModel returns what ReadData must store, where the message ends, and
// under reject the bare-newline errors it may report: when a message holds
// both a bare CR and a bare LF, which one ReadData names first is its own
// business (it judges a line's ending before the text inside it).
func dataModel(in []byte, reject bool) (stored []byte, end int, bare []error) {
	p := -1
	for i := 0; i+3 <= len(in); i++ {
		if string(in[i:i+3]) == ".\r\n" && (i == 0 || (i >= 2 && in[i-2] == '\r' && in[i-1] == '\n')) {
			p = i
			break
		}
	}
	if p < 0 {
		return nil, -1, nil
	}
	body := in[:p]
	if reject {
		var lf, cr bool
		for i, c := range body {
			lf = lf || c == '\n' && (i == 0 || body[i-1] != '\r')
			cr = cr || c == '\r' && (i+1 >= len(body) || body[i+1] != '\n')
		}
		if lf {
			bare = append(bare, ErrBareLF)
		}
		if cr {
			bare = append(bare, ErrBareCR)
		}
		if bare != nil {
			return nil, p + 3, bare
		}
	}
	var out []byte
	for len(body) > 0 {
		nl := bytes.IndexByte(body, '\n')
		line := body[:nl]
		body = body[nl+1:]
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 1 && line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out, p + 3, nil
}

func FuzzReadData(f *testing.F) {
	for _, v := range smuggleVariants {
		f.Add([]byte("a"+v+hidden+".\r\nQUIT\r\n"), uint8(0), uint16(0))
		f.Add([]byte("a"+v+hidden+".\r\nQUIT\r\n"), uint8(2), uint16(20))
	}
	f.Add([]byte("..x\r\n"+strings.Repeat("y", 40)+"\r\r\n.\r\nNEXT"), uint8(1), uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, policy uint8, limit uint16) {
		p := BareNewline(policy % 3)
		reject := p == BareNewlineReject
		want, end, bareWant := dataModel(in, reject)
		for _, size := range []int{16, 4096} {
			r := bufio.NewReaderSize(bytes.NewReader(in), size)
			var out bytes.Buffer
			res, err := ReadData(r, &out, DataOptions{BareNewline: p, SizeLimit: int64(limit)})
			rest, _ := io.ReadAll(r)
			if end < 0 {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("size %d: no terminator but err %v", size, err)
				}
				continue
			}
			if !bytes.Equal(rest, in[end:]) {
				t.Fatalf("size %d: rest %q, want %q", size, rest, in[end:])
			}
			if bareWant != nil {
				if !slices.ContainsFunc(bareWant, func(e error) bool { return errors.Is(err, e) }) {
					t.Fatalf("size %d: err %v, want one of %v", size, err, bareWant)
				}
				continue
			}
			if res.Size != int64(len(want)) {
				t.Fatalf("size %d: Size %d, want %d", size, res.Size, len(want))
			}
			if limit > 0 && len(want) > int(limit) {
				if !errors.Is(err, ErrTooBig) || out.Len() > int(limit) || !bytes.HasPrefix(want, out.Bytes()) {
					t.Fatalf("size %d: over limit: err %v, stored %d", size, err, out.Len())
				}
				continue
			}
			if err != nil || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("size %d: err %v stored %q, want %q", size, err, out.Bytes(), want)
			}
		}
	})
}

func FuzzChunkReader(f *testing.F) {
	f.Add([]byte("a\r\n.\r\nb\rc\n"), uint8(3), uint8(2))
	f.Add([]byte("abc\r"), uint8(4), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, cut uint8, policy uint8) {
		p := BareNewline(policy % 3)
		k := int(cut) % (len(in) + 1)
		r := bufio.NewReaderSize(bytes.NewReader(append(in, "NEXT\r\n"...)), 16)
		var out bytes.Buffer
		cr := NewChunkReader(&out, DataOptions{BareNewline: p})
		if err := cr.ReadChunk(r, int64(k)); err != nil {
			t.Fatal(err)
		}
		if err := cr.ReadChunk(r, int64(len(in)-k)); err != nil {
			t.Fatal(err)
		}
		_, err := cr.Finish()
		if cmd, _ := ReadCommand(r, 0, BareNewlineReject, 0); cmd != "NEXT" {
			t.Fatalf("next %q", cmd)
		}
		bare := false
		for i, c := range in {
			if c == '\n' && (i == 0 || in[i-1] != '\r') || c == '\r' && (i+1 == len(in) || in[i+1] != '\n') {
				bare = true
			}
		}
		if p == BareNewlineReject && bare != (err != nil) {
			t.Fatalf("bare %v err %v", bare, err)
		}
		if err == nil && !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("stored %q", out.Bytes())
		}
	})
}

// FuzzReadCommand checks ReadCommand against a model: lines split at LF;
// each is refused when too long or, under reject, when it has a bare LF or
// bare CR, and the reader always resumes at the next line.
func FuzzReadCommand(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a>\nRCPT\rTO\r\n"), uint8(2), uint8(8))
	f.Add([]byte(strings.Repeat("x", 70)+"\r\nQUIT\r\n"), uint8(0), uint8(20))
	f.Fuzz(func(t *testing.T, in []byte, policy uint8, lim uint8) {
		p := BareNewline(policy % 3)
		limit := int(lim) + 1
		r := bufio.NewReaderSize(bytes.NewReader(in), 16)
		rest := in
		for {
			got, err := ReadCommand(r, limit, p, 0)
			nl := bytes.IndexByte(rest, '\n')
			if nl < 0 {
				want := io.EOF
				if len(rest) > 0 {
					want = io.ErrUnexpectedEOF
				}
				if err != want {
					t.Fatalf("at end: %q %v, want %v", got, err, want)
				}
				return
			}
			line := rest[:nl]
			rest = rest[nl+1:]
			crlf := bytes.HasSuffix(line, []byte("\r"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			var want error
			switch {
			case len(line) > limit:
				want = ErrLineTooLong
			case p == BareNewlineReject && !crlf:
				want = ErrBareLF
			case p == BareNewlineReject && bytes.IndexByte(line, '\r') >= 0:
				want = ErrBareCR
			}
			if want != nil {
				if !errors.Is(err, want) {
					t.Fatalf("line %q: %q %v, want %v", line, got, err, want)
				}
				continue
			}
			if err != nil || got != string(line) {
				t.Fatalf("line %q: got %q %v", line, got, err)
			}
		}
	})
}
