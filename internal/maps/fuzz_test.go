package maps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{
		"key value\n",
		"Key1   Value One  \n  continued here\n# c\n\n   \nkey2\tv2\n  # x\n",
		"\"a\\\"b\\\\c d\" v1\n\"unterminated x\n\"\" e\nnoq\"x y\" v7\n",
		"a\\ b v1\nk\\\n  leading\n\r\n\"x\n y\" v\n",
		"blackholes.mail-abuse.org\t$rbl_code client=$client\n client_address=$client_address\n",
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, fold bool) {
		recs, err := ParseSource("f", data, fold)
		last := 0
		for _, r := range recs {
			if r.Key == "" || r.Value == "" || strings.Trim(r.Value, " \t\r\n\v\f") != r.Value {
				t.Fatalf("bad record %+v", r)
			}
			if r.Line <= last {
				t.Fatalf("line numbers out of order: %d after %d", r.Line, last)
			}
			last = r.Line
			if fold && foldASCII(r.Key) != r.Key {
				t.Fatalf("key %q not folded", r.Key)
			}
		}
		for _, le := range LineErrors(err) {
			if le.Line < 1 || le.Path != "f" {
				t.Fatalf("bad line error %+v", le)
			}
		}
	})
}

// FuzzIndex feeds arbitrary bytes to the index reader as if they were a
// .db file: it may refuse them, never panic or loop.
func FuzzIndex(f *testing.F) {
	for _, recs := range [][]Record{
		nil,
		{{"a", "1", 0}},
		{{"spam@spam.com", "REJECT", 0}, {"spam.org", "REJECT", 0}, {"", "", 0}},
	} {
		b, err := encodeIndex(recs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "a")
	}
	f.Add([]byte("MOATIDX\x00\x01\x00\x00\x00"), "")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		d, err := parseIndex(data)
		if err != nil {
			return
		}
		d.lookup(key)
		recs, err := d.records()
		if err != nil {
			return
		}
		for _, r := range recs {
			d.lookup(r.Key)
		}
	})
}

// FuzzIndexRoundTrip: whatever ParseSource accepts, the index built from
// it answers every key with its value.
func FuzzIndexRoundTrip(f *testing.F) {
	f.Add([]byte("a 1\nb 2\nA 3\n"))
	f.Add([]byte("\"x y\" 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, _ := ParseSource("f", data, true)
		recs = dedupFirst(recs)
		b, err := encodeIndex(recs)
		if err != nil {
			t.Fatal(err)
		}
		d, err := parseIndex(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if v, ok, err := d.lookup(r.Key); !ok || err != nil || v != r.Value {
				t.Fatalf("lookup %q = %q %v %v, want %q", r.Key, v, ok, err, r.Value)
			}
		}
	})
}

func FuzzInline(f *testing.F) {
	for _, s := range []string{
		"{ }", "{ foo = xx }", "{ foo=xx }x", "{ foo=xx x", "{ foo=xx {x=y}x}",
		"{ foo=XX, { bAr = lotsa stuff }}", `{ {"a b" = 1} }`, "{a={b=c}}", `{"a=1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := parseInline(spec, Options{Fold: true})
		if err != nil {
			if !strings.HasSuffix(err.Error(), `; need "inline:{name=value...}"`) {
				t.Fatalf("error without Postfix's hint: %v", err)
			}
		} else if len(m) == 0 {
			t.Fatal("empty table accepted")
		}
		if tbl, err := openStatic(spec, Options{}); err == nil {
			tbl.Lookup("x")
		}
	})
}

// BenchmarkLookup compares moat's index (mmap'd, hashed) with texthash's
// Go map for a table of 100,000 keys: the index should stay within a
// small factor of the map while needing no parse and no heap at open.
func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	name := filepath.Join(dir, "big")
	var src strings.Builder
	var recs []Record
	for i := range 100000 {
		k := fmt.Sprintf("user%d@domain%d.example", i, i%977)
		fmt.Fprintf(&src, "%s OK %d\n", k, i)
		recs = append(recs, Record{Key: k, Value: fmt.Sprintf("OK %d", i)})
	}
	if err := writeFile(name, src.String()); err != nil {
		b.Fatal(err)
	}
	if err := WriteIndex(name+".db", recs); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = recs[(i*7919)%len(recs)].Key
	}
	for _, typ := range []string{"hash", "texthash"} {
		b.Run(typ, func(b *testing.B) {
			tbl, err := Open(typ+":"+name, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer tbl.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok, err := tbl.Lookup(keys[i%len(keys)]); !ok || err != nil {
					b.Fatal("lookup failed")
				}
			}
		})
		b.Run(typ+"-open", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tbl, err := Open(typ+":"+name, Options{})
				if err != nil {
					b.Fatal(err)
				}
				tbl.Close()
			}
		})
	}
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o644) }
