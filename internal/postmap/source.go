package postmap

import (
	"fmt"
	"strings"

	"moat/internal/aliases"
	"moat/internal/maps"
)

// Warning is a complaint about one source line, printed as
// "PROG: warning: TEXT". Line orders it among the duplicate-key warnings,
// which Postfix prints as it stores each record.
type Warning struct {
	Line int
	Text string
}

// ParseTable reads postmap(1)'s input format ("INPUT FILE FORMAT" in the
// man page) with maps.ParseSource, the parser every fixed table shares, and
// turns its per-line errors into warnings: postmap skips a bad line and
// goes on. A key ending in ':' is kept with Postfix's hint that the file
// may be an aliases(5) file meant for postalias.
func ParseTable(path string, data []byte, fold bool) ([]maps.Record, []Warning) {
	return parseTable(path, data, fold, false)
}

// parseTable is ParseTable; texthash selects the texthash table's wording
// of a line without a value, which adds "-- ignoring this line".
func parseTable(path string, data []byte, fold, texthash bool) ([]maps.Record, []Warning) {
	recs, err := maps.ParseSource(path, data, fold)
	var warns []Warning
	for _, le := range maps.LineErrors(err) {
		if le.Orphan != "" {
			// postmap names no line here, and prints the text as
			// postalias does.
			warns = append(warns, Warning{le.Line, path + ": " + aliases.OrphanMessage(le.Orphan)})
			continue
		}
		// texthash ends "expected format" with "-- ignoring this
		// line"; postmap itself does not.
		msg := le.Error()
		if !texthash && strings.HasPrefix(le.Msg, "expected format:") {
			msg = strings.TrimSuffix(msg, " -- ignoring this line")
		}
		warns = append(warns, Warning{le.Line, msg})
	}
	for _, r := range recs {
		if strings.HasSuffix(r.Key, ":") {
			warns = append(warns, Warning{r.Line,
				fmt.Sprintf("%s, line %d: record is in \"key: value\" format; is this an alias file?", path, r.Line)})
		}
	}
	sortWarnings(warns)
	return recs, warns
}

// ParseAliases adapts aliases.Parse to the record form postalias stores.
func ParseAliases(path string, data []byte, fold bool) ([]maps.Record, []Warning) {
	as, ws := aliases.Parse(path, data, fold)
	recs := make([]maps.Record, len(as))
	for i, a := range as {
		recs[i] = maps.Record{Key: a.Name, Value: a.Value, Line: a.Line}
	}
	warns := make([]Warning, len(ws))
	for i, w := range ws {
		warns[i] = Warning{w.Line, w.String()}
	}
	return recs, warns
}

func sortWarnings(w []Warning) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && w[j].Line < w[j-1].Line; j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}
