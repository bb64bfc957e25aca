package postmap_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// skipShort skips the longer differential runs under -short: each runs
// Debian's tools a few hundred times.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long differential run against Debian's postmap/postalias")
	}
}

// keysOf returns lookup keys worth asking a table for: each line's first
// word as written, upper- and lower-cased, plus keys nobody stored.
func keysOf(t *testing.T, w workdirs, file string, alias bool) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.pfx, file))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimRight(l, "\r")
		if l == "" || l[0] == ' ' || l[0] == '\t' || l[0] == '#' {
			continue
		}
		k := strings.Fields(l)[0]
		if alias {
			k, _, _ = strings.Cut(l, ":")
			k = strings.Trim(k, "\" \t")
		}
		add(k)
		add(strings.ToUpper(k))
		add(strings.ToLower(k))
	}
	add("no-such-key")
	add("")
	return keys
}

func queries(prog, spec string, keys []string, extra ...string) []step {
	var steps []step
	for _, k := range keys {
		steps = append(steps, step{prog: prog, args: append(append([]string{}, extra...), "-q", k, spec)})
	}
	return steps
}

func TestDiffPostmapTables(t *testing.T) {
	skipShort(t)
	total := 0
	for _, file := range []string{"basic.map", "dups.map", "odd.map", "access.map", "long.map", "whitespace.map"} {
		t.Run(file, func(t *testing.T) {
			w := setup(t)
			keys := keysOf(t, w, file, false)
			steps := []step{
				{prog: "postmap", args: []string{file}},
				{prog: "postmap", args: []string{"-s", file}, sorted: true},
			}
			steps = append(steps, queries("postmap", file, keys)...)
			steps = append(steps, queries("postmap", "hash:"+file, keys[:min(6, len(keys))])...)
			steps = append(steps,
				step{prog: "postmap", args: []string{"-q", "-", file}, stdin: strings.Join(keys, "\n") + "\n"},
				step{prog: "postmap", args: []string{"-q", "-", file, file}, stdin: strings.Join(keys, "\n")},
				step{prog: "postmap", args: []string{"-f", file}},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
			)
			steps = append(steps, queries("postmap", file, keys, "-f")...)
			steps = append(steps,
				step{prog: "postmap", args: []string{"-r", file}},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
				step{prog: "postmap", args: []string{"-w", file}},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
				step{prog: "postmap", args: []string{"-rw", file}},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
				step{prog: "postmap", args: []string{"-wr", file}},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
				step{prog: "postmap", args: []string{"-i", file}, stdin: "new1 v1\nNEW2 v2\n" + keys[0] + " replaced?\nbadline\n"},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
				step{prog: "postmap", args: []string{"-ir", file}, stdin: keys[0] + " replaced\n"},
				step{prog: "postmap", args: []string{"-q", keys[0], file}},
				step{prog: "postmap", args: []string{"-d", keys[0], file}},
				step{prog: "postmap", args: []string{"-d", keys[0], file}},
				step{prog: "postmap", args: []string{"-d", "-", file}, stdin: strings.Join(keys[1:5], "\n") + "\nmissing\n"},
				step{prog: "postmap", args: []string{"-d", "-", file}, stdin: "missing\n"},
				step{prog: "postmap", args: []string{"-s", file}, sorted: true},
				step{prog: "postmap", args: []string{"-s", "texthash:" + file}, sorted: true},
			)
			steps = append(steps, queries("postmap", "texthash:"+file, keys[:min(8, len(keys))])...)
			total += script(t, file, w, steps, false)
		})
	}
	t.Logf("%d postmap steps compared", total)
}

func TestDiffPostalias(t *testing.T) {
	skipShort(t)
	total := 0
	for _, file := range []string{"basic.aliases", "odd.aliases", "debian.aliases", "empty.aliases", "crlf.aliases", "ws.aliases"} {
		t.Run(file, func(t *testing.T) {
			w := setup(t)
			keys := keysOf(t, w, file, true)
			steps := []step{
				{prog: "postalias", args: []string{file}},
				{prog: "postalias", args: []string{"-s", file}, sorted: true},
			}
			steps = append(steps, queries("postalias", file, keys)...)
			steps = append(steps, queries("postalias", file, []string{"@"})...)
			steps = append(steps,
				step{prog: "postalias", args: []string{"-q", "-", file}, stdin: strings.Join(keys, "\n") + "\n@\n"},
				step{prog: "postalias", args: []string{"-f", file}},
				step{prog: "postalias", args: []string{"-s", file}, sorted: true},
				step{prog: "postalias", args: []string{"-r", file}},
				step{prog: "postalias", args: []string{"-s", file}, sorted: true},
				step{prog: "postalias", args: []string{"-w", file}},
				step{prog: "postalias", args: []string{"-i", file}, stdin: "new: a, b\nbad line\n"},
				step{prog: "postalias", args: []string{"-s", file}, sorted: true},
				step{prog: "postalias", args: []string{"-d", keys[0], file}},
				step{prog: "postalias", args: []string{"-d", "-", file}, stdin: "new\nmissing\n"},
				step{prog: "postalias", args: []string{"-s", file}, sorted: true},
				// A postmap-format reading of an alias file.
				step{prog: "postmap", args: []string{file}},
			)
			total += script(t, file, w, steps, false)
		})
	}
	t.Logf("%d postalias steps compared", total)
}

func lines(t *testing.T, w workdirs, file string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.pfx, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func TestDiffPatternTables(t *testing.T) {
	skipShort(t)
	total := 0
	for _, spec := range []string{"regexp:test.regexp", "pcre:test.pcre", "cidr:test.cidr"} {
		t.Run(spec, func(t *testing.T) {
			w := setup(t)
			file := strings.SplitN(spec, ":", 2)[1]
			keys := lines(t, w, file+".queries")
			steps := queries("postmap", spec, keys)
			steps = append(steps, queries("postmap", spec, keys[:3], "-f")...)
			steps = append(steps,
				step{prog: "postmap", args: []string{"-q", "-", spec}, stdin: strings.Join(keys, "\n") + "\n"},
				step{prog: "postmap", args: []string{"-s", spec}},
				step{prog: "postmap", args: []string{spec}},
				step{prog: "postmap", args: []string{"-i", spec}, stdin: "a b\n"},
				step{prog: "postmap", args: []string{"-d", "a", spec}},
			)
			total += script(t, spec, w, steps, false)
		})
	}
	t.Logf("%d pattern-table steps compared", total)
}

func TestDiffMessageModes(t *testing.T) {
	w := setup(t)
	var steps []step
	for _, msg := range []string{"message.txt", "mboxmsg.txt", "mime1.txt", "mime2.txt", "mime3.txt", "mime4.txt", "mime5.txt"} {
		data, err := os.ReadFile(filepath.Join(w.pfx, msg))
		if err != nil {
			t.Fatal(err)
		}
		for _, flags := range []string{"-h", "-b", "-hb", "-bh", "-hm", "-bm", "-hbm"} {
			steps = append(steps,
				step{prog: "postmap", args: []string{flags, "-q", "-", "regexp:hb.regexp"}, stdin: string(data)},
				step{prog: "postmap", args: []string{flags, "-q", "-", "regexp:any.regexp"}, stdin: string(data)})
		}
	}
	steps = append(steps,
		step{prog: "postmap", args: []string{"b64.map"}},
		step{prog: "postmap", args: []string{"-F", "-q", "k", "b64.map"}},
		step{prog: "postmap", args: []string{"-F", "-q", "k2", "b64.map"}},
		step{prog: "postmap", args: []string{"-F", "-q", "-", "b64.map"}, stdin: "k\nk2\nnone\n"},
		step{prog: "postmap", args: []string{"-F", "-q", "bad", "b64.map"}},
		step{prog: "postmap", args: []string{"-F", "-s", "b64.map"}, sorted: true},
		step{prog: "postmap", args: []string{"-F", "b64.map"}},
		step{prog: "postmap", args: []string{"-F", "files.map"}},
		step{prog: "postmap", args: []string{"-s", "files.map"}, sorted: true},
		step{prog: "postmap", args: []string{"-F", "-s", "files.map"}, sorted: true},
		step{prog: "postmap", args: []string{"-F", "-q", "k2", "files.map"}},
	)
	n := script(t, "message", w, steps, false)
	t.Logf("%d message-mode and -F steps compared", n)
}

func TestDiffUTF8(t *testing.T) {
	skipShort(t)
	w := setup(t)
	u := func(prog string, args ...string) step { return step{prog: prog, args: args, utf8: true} }
	keys := []string{"ÉCOLE", "école", "École", "STRASSE", "straße", "Strasse", "σας", "ΣΑΣ", "σασ",
		"İX", "i̇x", "ix", "FILE", "ﬁle", "kelvink", "KELVINK", "Kelvin\u212a", "µicro", "μICRO",
		"ǆ", "ǅ", "DŽ", "PLAIN", "bad\xff", "a", "no-such"}
	steps := []step{
		u("postmap", "utf8.map"),
		u("postmap", "utf8-invalid.map"),
		u("postalias", "utf8.aliases"),
		{prog: "postmap", args: []string{"-s", "utf8.map"}, utf8: true, sorted: true},
		{prog: "postalias", args: []string{"-s", "utf8.aliases"}, utf8: true, sorted: true},
		{prog: "postmap", args: []string{"-q", "-", "utf8.map"}, utf8: true, stdin: strings.Join(keys, "\n") + "\n"},
		u("postmap", "-d", "STRASSE", "utf8.map"),
		u("postmap", "-q", "straße", "utf8.map"),
		u("postmap", "-u", "utf8.map"),
		{prog: "postmap", args: []string{"-u", "-s", "utf8.map"}, utf8: true, sorted: true},
		u("postmap", "-u", "-q", "école", "utf8.map"),
		u("postmap", "-u", "-q", "École", "utf8.map"),
		u("postmap", "-f", "utf8.map"),
		{prog: "postmap", args: []string{"-s", "utf8.map"}, utf8: true, sorted: true},
		u("postmap", "-f", "-q", "ÉCOLE", "utf8.map"),
	}
	for _, k := range keys {
		steps = append(steps, u("postmap", "-q", k, "utf8-invalid.map"), u("postalias", "-q", k, "utf8.aliases"))
	}
	msg, err := os.ReadFile(filepath.Join(w.pfx, "latin1msg.txt"))
	if err != nil {
		t.Fatal(err)
	}
	steps = append(steps, u("postmap", "hdr.map"))
	for _, flags := range []string{"-hb", "-hbU", "-hbu"} {
		for _, table := range []string{"regexp:any.regexp", "hdr.map"} {
			steps = append(steps, step{prog: "postmap", args: []string{flags, "-q", "-", table}, stdin: string(msg), utf8: true})
		}
	}
	n := script(t, "utf8", w, steps, false)
	t.Logf("%d UTF-8 steps compared", n)
}

func TestDiffOtherTypes(t *testing.T) {
	w := setup(t)
	var steps []step
	for _, q := range [][]string{
		{"-q", "a", "inline:{a=b}"},
		{"-q", "A", "inline:{a=b, c=d}"},
		{"-q", "c", "inline:{ a = b , { c = d e } }"},
		{"-q", "x", "inline:{a=b"},
		{"-q", "x", "inline:{}"},
		{"-q", "x", "inline:{x}"},
		{"-s", "inline:{a=b,c=d}"},
		{"inline:{a=b}"},
		{"-q", "x", "static:hi"},
		{"-q", "", "static:hi"},
		{"-q", "x", "static:{a b}"},
		{"-s", "static:hi"},
		{"static:basic.map"},
		{"static:hi"},
		{"-q", "x", "static:"},
		{"-q", "foo", "fail:x"},
		{"-s", "fail:x"},
		{"-q", "root", "unix:passwd.byname"},
		{"-q", "no-such-user-x", "unix:passwd.byname"},
		{"-s", "unix:passwd.byname"},
		{"unix:basic.map"},
		{"-q", "foo", "texthash:basic.map"},
		{"-q", "nope", "texthash:nosuch"},
		{"texthash:basic.map"},
		{"-d", "foo", "texthash:basic.map"},
		{"-d", "a", "regexp:test.regexp"},
		{"-q", "a", "foo:basic.map"},
		{"foo:basic.map"},
		{"-q", "a", "hash:"},
		{"hash:"},
		{"-q", "a", "nosuch"},
		{"nosuch"},
		{"regexp:/nonexist"},
		{"-q", "a", "regexp:/nonexist"},
		{"-s", "regexp:/nonexist"},
		{"-s", "nosuch"},
		{"-d", "a", "nosuch"},
	} {
		steps = append(steps, step{prog: "postmap", args: q})
	}
	for _, q := range [][]string{
		{}, {"-x"}, {"-q"}, {"-q", "a"}, {"-d"}, {"-c"},
		{"-s", "-q", "a", "basic.map"}, {"-d", "a", "-q", "b", "basic.map"},
		{"-q", "a", "-q", "b", "basic.map"}, {"-b", "basic.map"}, {"-h", "-q", "a", "basic.map"},
		{"-m", "basic.map"}, {"-b"},
	} {
		steps = append(steps, step{prog: "postmap", args: q}, step{prog: "postalias", args: q})
	}
	n := script(t, "other", w, steps, true)
	steps = []step{}
	steps = append(steps,
		step{prog: "postmap", args: []string{"basic.map", "dups.map"}},
		step{prog: "postmap", args: []string{"-q", "a", "basic.map", "dups.map"}},
		step{prog: "postmap", args: []string{"-q", "zz", "basic.map", "nosuch"}},
		step{prog: "postmap", args: []string{"-q", "foo", "basic.map", "nosuch"}},
		step{prog: "postmap", args: []string{"-q", "-", "basic.map", "nosuch"}, stdin: "foo\n"},
		step{prog: "postmap", args: []string{"-s", "dups.map", "basic.map"}, sorted: true},
		step{prog: "postmap", args: []string{"-s", "-s", "dups.map"}, sorted: true},
		step{prog: "postmap", args: []string{"-d", "a", "dups.map", "nosuch"}},
		step{prog: "postmap", args: []string{"-d", "a", "basic.map", "dups.map"}},
		step{prog: "postmap", args: []string{"-q", "a", "dups.map"}},
		step{prog: "postmap", args: []string{"-i", "basic.map", "dups.map"}, stdin: "x y\n"},
		step{prog: "postmap", args: []string{"-q", "x", "dups.map"}},
		step{prog: "postmap", args: []string{"-i", "fresh"}, stdin: "k v\n"},
		step{prog: "postmap", args: []string{"-s", "fresh"}},
		step{prog: "postmap", args: []string{"btree:dups.map"}},
		step{prog: "postmap", args: []string{"-q", "b", "btree:dups.map"}},
		step{prog: "postmap", args: []string{"lmdb:dups.map"}},
		step{prog: "postmap", args: []string{"cdb:dups.map"}},
		step{prog: "postmap", args: []string{"-q", "a", "lmdb:dups.map"}},
		step{prog: "postmap", args: []string{"-q", "b", "cdb:dups.map"}},
		step{prog: "postmap", args: []string{"-q", "a", "cdb:nosuch"}},
		step{prog: "postalias", args: []string{"-q", "x", "nosuch"}},
		step{prog: "postalias", args: []string{"nosuch"}},
	)
	n += script(t, "other", w, steps, false)
	t.Logf("%d other steps compared", n)
}
