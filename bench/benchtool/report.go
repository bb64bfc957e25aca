package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// record is one raw result line from bench/run: space-separated
// key=value pairs, the same keys measure and idle print plus the run's
// identity (server, mode, point, sessions, count, size).
type record map[string]string

// parseRecord splits a raw result line. A word without "=" or a repeated
// key is an error: the file is written by bench/run alone, so anything
// else means it was cut short or edited by hand.
func parseRecord(line string) (record, error) {
	r := record{}
	for _, w := range strings.Fields(line) {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("word %q is not key=value", w)
		}
		if _, dup := r[k]; dup {
			return nil, fmt.Errorf("key %q twice", k)
		}
		r[k] = v
	}
	if len(r) == 0 {
		return nil, errors.New("empty record")
	}
	return r, nil
}

// num returns a numeric field, or false when it is missing or not a
// number (a run that never produced it).
func (r record) num(k string) (float64, bool) {
	v, err := strconv.ParseFloat(r[k], 64)
	return v, err == nil
}

// report turns the raw results into the Markdown tables of
// docs/BENCHMARKS.md: per mode, each point with Postfix and moat side by
// side and the ratio moat/Postfix (above 1 is better for moat in msg/s,
// below 1 is better for CPU and memory). In the receive modes msg/s is
// the acceptance rate (count/wall of smtp-source); in the delivery modes
// it is the delivery rate (count/done), since there the measured command
// only releases the held messages and returns long before they are
// delivered.
func report(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fl.String("in", "", "raw results file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	recs, err := readRecords(f)
	if err != nil {
		return fmt.Errorf("report: %s: %w", *in, err)
	}
	writeTables(out, recs)
	return nil
}

func readRecords(r io.Reader) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rec, err := parseRecord(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// servers are the table's two sides, in column order.
var servers = [2]string{"postfix", "moat"}

func writeTables(out io.Writer, recs []record) {
	find := func(server, mode, point string) record {
		for _, r := range recs {
			if r["server"] == server && r["mode"] == mode && r["point"] == point {
				return r
			}
		}
		return nil
	}
	var modes, points []string
	seen := map[string]bool{}
	for _, r := range recs {
		if r["mode"] == "idle" {
			continue
		}
		if m := "m " + r["mode"]; !seen[m] {
			seen[m] = true
			modes = append(modes, r["mode"])
		}
		if p := "p " + r["point"]; !seen[p] {
			seen[p] = true
			points = append(points, r["point"])
		}
	}
	for _, mode := range modes {
		fmt.Fprintf(out, "\n### %s\n\n", modeTitle(mode))
		fmt.Fprintln(out, "| point | msg/s Postfix | msg/s moat | × | CPU s/1000 Postfix | CPU s/1000 moat | × | peak RSS MB Postfix | peak RSS MB moat | × | all done s Postfix | all done s moat | check Postfix | check moat |")
		fmt.Fprintln(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|")
		for _, point := range points {
			var cells [2][5]string
			var vals [2][3]float64
			var have [2]bool
			for i, s := range servers {
				r := find(s, mode, point)
				if r == nil {
					cells[i] = [5]string{"pending", "pending", "pending", "pending", "pending"}
					continue
				}
				count, _ := r.num("count")
				wall, okW := r.num("wall")
				cpu, okC := r.num("cpu_done")
				rss, okR := r.num("peak_rss_kb")
				done, _ := r.num("done")
				if !okW || !okC || !okR || wall <= 0 || count <= 0 {
					cells[i] = [5]string{"error", "error", "error", "error", check(r)}
					continue
				}
				have[i] = true
				rate := count / wall
				if deliveryMode(mode) {
					if done <= 0 {
						cells[i] = [5]string{"error", "error", "error", "error", check(r)}
						have[i] = false
						continue
					}
					rate = count / done
				}
				vals[i] = [3]float64{rate, cpu / count * 1000, rss / 1024}
				cells[i] = [5]string{
					fmt.Sprintf("%.0f", vals[i][0]), fmt.Sprintf("%.2f", vals[i][1]),
					fmt.Sprintf("%.0f", vals[i][2]), fmt.Sprintf("%.1f", done), check(r)}
			}
			ratio := func(k int) string {
				if !have[0] || !have[1] || vals[0][k] == 0 {
					return "–"
				}
				return fmt.Sprintf("%.2f", vals[1][k]/vals[0][k])
			}
			fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				point, cells[0][0], cells[1][0], ratio(0), cells[0][1], cells[1][1], ratio(1),
				cells[0][2], cells[1][2], ratio(2), cells[0][3], cells[1][3], cells[0][4], cells[1][4])
		}
	}
	writeLoad(out, recs)
	// A run with BENCH_IDLE=0 (the delivery modes alone) has no idle
	// records: no table of "pending" rows for something never planned.
	idleRun := false
	for _, r := range recs {
		idleRun = idleRun || r["mode"] == "idle"
	}
	if !idleRun {
		return
	}
	fmt.Fprint(out, "\n### idle connections\n\n")
	fmt.Fprintln(out, "| server | greeted | server processes | RSS KB / connection | PSS KB / connection |")
	fmt.Fprintln(out, "|---|--:|--:|--:|--:|")
	for _, s := range servers {
		r := find(s, "idle", "idle")
		if r == nil {
			fmt.Fprintf(out, "| %s | pending | pending | pending | pending |\n", s)
			continue
		}
		fmt.Fprintf(out, "| %s | %s/%s | %s → %s | %s | %s |\n", s, r["greeted"], r["n"],
			r["procs_before"], r["procs_after"], r["rss_per_conn_kb"], r["pss_per_conn_kb"])
	}
}

func modeTitle(mode string) string {
	switch mode {
	case "store":
		return "store: accept, queue, deliver to one Maildir"
	case "discard":
		return "discard: accept, queue, discard (local_transport = discard)"
	case "deliver-maildir":
		return "deliver-maildir: release held messages, local(8) delivers to one Maildir (msg/s = delivery rate)"
	case "deliver-lmtp":
		return "deliver-lmtp: release held messages, local(8) passes them to Dovecot LMTP (mailbox_transport; msg/s = delivery rate)"
	}
	return mode
}

// deliveryMode says whether a mode times delivery alone (bench/run's
// deliver-* modes), where every message must end up in the Maildir and
// the rate is counted until the last one is there.
func deliveryMode(mode string) bool { return strings.HasPrefix(mode, "deliver-") }

// storing says whether every message of a run must reach the Maildir.
func storing(mode string) bool { return mode == "store" || deliveryMode(mode) }

// check says whether a run did what it should: the generator (in the
// delivery modes, the release command) exited 0, the queue drained, and in
// the store and delivery modes every message is in the Maildir.
func check(r record) string {
	var bad []string
	if r["rc"] != "0" {
		what := "smtp-source"
		if deliveryMode(r["mode"]) {
			what = "release"
		}
		bad = append(bad, what+" rc="+r["rc"])
	}
	if r["queued"] != "0" {
		bad = append(bad, r["queued"]+" left in queue")
	}
	if storing(r["mode"]) && r["delivered"] != r["count"] {
		bad = append(bad, r["delivered"]+"/"+r["count"]+" delivered")
	}
	if r["mode"] == "discard" && r["delivered"] != "0" {
		bad = append(bad, r["delivered"]+" stored")
	}
	if len(bad) == 0 {
		if storing(r["mode"]) {
			return r["delivered"] + "/" + r["count"] + " stored"
		}
		return "ok"
	}
	return strings.Join(bad, ", ")
}

// writeLoad states the machine's 1-minute load average seen before each
// point, per server: on a shared machine it says how comparable the two
// columns are.
func writeLoad(out io.Writer, recs []record) {
	var parts []string
	for _, s := range servers {
		lo, hi, n := 0.0, 0.0, 0
		for _, r := range recs {
			v, ok := r.num("load")
			if r["server"] != s || !ok {
				continue
			}
			if n == 0 || v < lo {
				lo = v
			}
			if n == 0 || v > hi {
				hi = v
			}
			n++
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f–%.1f", s, lo, hi))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(out, "\nLoad average (1 min) before the points: %s.\n", strings.Join(parts, ", "))
	}
}
