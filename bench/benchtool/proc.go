package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// clockTicks is USER_HZ, the unit of the time fields in /proc/PID/stat
// (proc(5): "measured in clock ticks (divide by sysconf(_SC_CLK_TCK))").
// Linux fixes it at 100 on every architecture Go supports, and reading
// sysconf would need cgo, which moat's build avoids.
const clockTicks = 100

// procStat is the part of /proc/PID/stat the benchmark needs: the parent
// (to walk a server's process tree), CPU ticks of the process and of its
// reaped children (so a Postfix smtpd that exited during a run still
// counts, through its parent's cutime/cstime), and resident pages.
type procStat struct {
	PID      int
	PPID     int
	UTime    uint64
	STime    uint64
	CUTime   uint64
	CSTime   uint64
	RSSPages int64
}

// parseStat reads one /proc/PID/stat line (proc(5)). The command name,
// field 2, is in parentheses and may itself contain spaces and ")", so
// the numeric fields are counted from the last ")".
func parseStat(b []byte) (procStat, error) {
	var s procStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return s, errors.New("stat: no (comm) field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return s, fmt.Errorf("stat: pid: %w", err)
	}
	s.PID = pid
	// Fields from 3 (state) on; index 0 here is field 3.
	f := bytes.Fields(b[end+1:])
	const (
		ppid   = 4 - 3
		utime  = 14 - 3
		stime  = 15 - 3
		cutime = 16 - 3
		cstime = 17 - 3
		rss    = 24 - 3
	)
	if len(f) <= rss {
		return s, fmt.Errorf("stat: %d fields after comm, want > %d", len(f), rss)
	}
	if s.PPID, err = strconv.Atoi(string(f[ppid])); err != nil {
		return s, fmt.Errorf("stat: ppid: %w", err)
	}
	// cutime and cstime are signed (long) in the kernel's format but never
	// negative in practice; parse all four as unsigned and refuse a sign.
	for i, dst := range []*uint64{&s.UTime, &s.STime, &s.CUTime, &s.CSTime} {
		if *dst, err = strconv.ParseUint(string(f[utime+i]), 10, 64); err != nil {
			return s, fmt.Errorf("stat: field %d: %w", utime+i+3, err)
		}
	}
	if s.RSSPages, err = strconv.ParseInt(string(f[rss]), 10, 64); err != nil {
		return s, fmt.Errorf("stat: rss: %w", err)
	}
	return s, nil
}

// parsePss returns the "Pss:" figure in kB from /proc/PID/smaps_rollup
// (proc(5)). Proportional set size splits shared pages among the processes
// mapping them, so summing it over Postfix's one-process-per-session model
// does not count the shared smtpd text a thousand times as RSS does.
func parsePss(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		rest, ok := bytes.CutPrefix(line, []byte("Pss:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("smaps_rollup: malformed Pss line %q", line)
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("smaps_rollup: Pss value %q", f[0])
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("smaps_rollup: %w", err)
	}
	return 0, errors.New("smaps_rollup: no Pss line")
}

// treeUsage is one sample of a whole server: every process descending
// from the root PID (the Postfix master, or moat's process).
type treeUsage struct {
	Procs    int
	Ticks    uint64 // utime+stime+cutime+cstime summed over the tree
	RSSBytes int64
	PSSKB    int64 // only when asked for: reading smaps_rollup walks page tables
}

// CPUSeconds converts the tree's ticks to seconds.
func (u treeUsage) CPUSeconds() float64 { return float64(u.Ticks) / clockTicks }

// sampleTree reads /proc once and sums the tree rooted at root. Processes
// that vanish between listing and reading are skipped: their CPU time has
// moved into their parent's cutime/cstime, which is in the tree.
func sampleTree(proc string, root int, withPss bool) (treeUsage, error) {
	var u treeUsage
	ents, err := os.ReadDir(proc)
	if err != nil {
		return u, fmt.Errorf("sample: %w", err)
	}
	all := make(map[int]procStat, len(ents))
	children := make(map[int][]int)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue
		}
		s, err := parseStat(b)
		if err != nil {
			return u, fmt.Errorf("sample: /proc/%d: %w", pid, err)
		}
		all[pid] = s
		children[s.PPID] = append(children[s.PPID], pid)
	}
	if _, ok := all[root]; !ok {
		return u, fmt.Errorf("sample: process %d is gone", root)
	}
	page := int64(os.Getpagesize())
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		s := all[pid]
		u.Procs++
		u.Ticks += s.UTime + s.STime + s.CUTime + s.CSTime
		u.RSSBytes += s.RSSPages * page
		if withPss {
			if b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "smaps_rollup")); err == nil {
				if kb, err := parsePss(b); err == nil {
					u.PSSKB += kb
				}
			}
		}
		queue = append(queue, children[pid]...)
	}
	return u, nil
}
