package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

// relayReport writes bench/relay's table (docs/BENCHMARKS.md, "Relay
// (issue 8, item 6)"): one row per configuration (sessions × domains, and
// the repetition when one was run again), Postfix and moat side by side
// with the ratio moat/Postfix. msg/s is count/done: from smtp-source's
// start until the sinks held every message and the queue was empty, the
// issue's end-to-end relay rate.
func relayReport(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("relayreport", flag.ContinueOnError)
	in := fl.String("in", "", "raw results file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("relayreport: %w", err)
	}
	defer f.Close()
	recs, err := readRecords(f)
	if err != nil {
		return fmt.Errorf("relayreport: %s: %w", *in, err)
	}
	writeRelayTable(out, recs)
	return nil
}

// relayRow is one configuration's pair of results.
type relayRow struct {
	key     string
	servers map[string]record
}

func writeRelayTable(out io.Writer, recs []record) {
	var rows []*relayRow
	byKey := map[string]*relayRow{}
	for _, r := range recs {
		if r["server"] == "" || r["sessions"] == "" {
			continue
		}
		key := r["sessions"] + " " + r["domains"] + " " + r["rep"]
		row := byKey[key]
		if row == nil {
			row = &relayRow{key: key, servers: map[string]record{}}
			byKey[key] = row
			rows = append(rows, row)
		}
		row.servers[r["server"]] = r
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| sessions | domains | run | load P / m | msg/s Postfix | msg/s moat | × | CPU s/1000 Postfix | CPU s/1000 moat | × | peak RSS MB P / m | all done s P / m | check Postfix | check moat |")
	fmt.Fprintln(out, "|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|---|---|---|---|")
	for _, row := range rows {
		p, m := row.servers["postfix"], row.servers["moat"]
		first := p
		if first == nil {
			first = m
		}
		rate := func(r record) (float64, bool) {
			c, ok1 := r.num("count")
			d, ok2 := r.num("done")
			if !ok1 || !ok2 || d <= 0 || r["rc"] != "0" {
				return 0, false
			}
			return c / d, true
		}
		cpu := func(r record) (float64, bool) {
			c, ok1 := r.num("count")
			u, ok2 := r.num("cpu_done")
			if !ok1 || !ok2 || c <= 0 {
				return 0, false
			}
			return u / c * 1000, true
		}
		rss := func(r record) string {
			if v, ok := r.num("peak_rss_kb"); ok {
				return fmt.Sprintf("%.0f", v/1024)
			}
			return "–"
		}
		str := func(r record, k string) string {
			if r == nil || r[k] == "" {
				return "–"
			}
			return r[k]
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n",
			str(first, "sessions"), str(first, "domains"), str(first, "rep"),
			str(p, "load"), str(m, "load"),
			cell(p, rate, "%.0f"), cell(m, rate, "%.0f"), ratio(p, m, rate),
			cell(p, cpu, "%.2f"), cell(m, cpu, "%.2f"), ratio(p, m, cpu),
			rss(p), rss(m), str(p, "done"), str(m, "done"),
			relayCheck(p), relayCheck(m))
	}
}

func cell(r record, f func(record) (float64, bool), format string) string {
	if r == nil {
		return "pending"
	}
	v, ok := f(r)
	if !ok {
		return "–"
	}
	return fmt.Sprintf(format, v)
}

func ratio(p, m record, f func(record) (float64, bool)) string {
	if p == nil || m == nil {
		return "–"
	}
	a, ok1 := f(p)
	b, ok2 := f(m)
	if !ok1 || !ok2 || a == 0 {
		return "–"
	}
	return fmt.Sprintf("**%.2f**", b/a)
}

// relayCheck says whether every message reached a sink and the queue
// drained: a rate is only meaningful when both hold.
func relayCheck(r record) string {
	if r == nil {
		return "pending"
	}
	if r["rc"] != "0" {
		return "rc=" + r["rc"]
	}
	return fmt.Sprintf("%s/%s received, %s queued", r["received"], r["count"], r["queued"])
}
