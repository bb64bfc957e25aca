// Package saslpasswd is `moat saslpasswd`: it adds, changes and removes the
// users of moat's built-in SASL backend (smtpd_sasl_type = moat) in the
// source file of a smtpd_sasl_password_maps table, then rebuilds an indexed
// table as postmap(1) would. Passwords are read from the terminal without
// echo, or as one line on standard input, never from the command line where
// ps(1) and shell history would show them (docs/SASL.md).
//
// Usage:
//
//	moat saslpasswd [-c config_dir] [-t type:file] [-C] [-N] [-p] user
//	moat saslpasswd [-c config_dir] [-t type:file] -d user
//
// -t names the table (default: the first of smtpd_sasl_password_maps), -C
// also stores a {CRAM-MD5} secret (password-equivalent; only for clients
// that need CRAM-MD5), -N stores no {SCRAM-SHA-256} secret, -p reads the
// password from standard input without a prompt, -d removes the user.
package saslpasswd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/getopt"
	"moat/internal/postmap"
	"moat/internal/sasl"
)

// maxPassword bounds what is read: a password is a line, not a file.
const maxPassword = 1024

// Main runs the command and returns its exit status.
func Main(env *cli.Env, prog string, args []string) int {
	parsed, rest, err := getopt.Parse(args, "c:t:CNpd")
	if err != nil || len(rest) != 1 {
		env.Errorf(prog, "usage: %s [-c config_dir] [-t type:file] [-C] [-N] [-p | -d] user", prog)
		return 1
	}
	var cdir, table string
	var cram, noSCRAM, stdin, del bool
	for _, o := range parsed {
		switch o.Flag {
		case 'c':
			cdir = o.Arg
		case 't':
			table = o.Arg
		case 'C':
			cram = true
		case 'N':
			noSCRAM = true
		case 'p':
			stdin = true
		case 'd':
			del = true
		}
	}
	user := rest[0]
	if !ValidUser(user) {
		return env.Fatalf(prog, "bad user name %q", user)
	}
	dir := env.ConfigDir(cdir)
	if table == "" {
		cfg, err := config.Load(dir)
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		names, err := cfg.List("smtpd_sasl_password_maps")
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		if len(names) == 0 {
			return env.Fatalf(prog, "smtpd_sasl_password_maps is empty; name a table with -t type:file")
		}
		table = names[0]
	}
	typ, path, err := editable(table)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	var value string
	if !del {
		pw, err := readPassword(env, stdin)
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		value, err = sasl.NewCredentials(pw, sasl.HashOptions{SCRAM: !noSCRAM, CRAM: cram})
		clear(pw)
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
	}
	old, err := os.ReadFile(path)
	if err != nil && !(errors.Is(err, os.ErrNotExist) && !del) {
		return env.Fatalf(prog, "%v", err)
	}
	data, found := Edit(old, user, value)
	if del && !found {
		return env.Fatalf(prog, "%s: user %s not found", path, user)
	}
	if err := writeAtomic(path, data); err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	if typ != "texthash" {
		// An indexed table: rebuild NAME.db from the source as postmap
		// does, so the daemons see the change within a second.
		if st := postmap.Main(env, "postmap", []string{"-c", dir, typ + ":" + path}); st != 0 {
			return st
		}
	}
	return 0
}

// ValidUser reports whether name can be a table key: not empty, no
// blanks or control characters (they would split or hide the entry), not
// starting with "#" (a comment), valid UTF-8.
func ValidUser(name string) bool {
	if name == "" || name[0] == '#' || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// editable returns the type and source file of a table saslpasswd can
// change: the file-based types (proxy: is looked through).
func editable(spec string) (typ, path string, err error) {
	spec = strings.TrimPrefix(spec, "proxy:")
	typ, path, ok := strings.Cut(spec, ":")
	if !ok || path == "" {
		return "", "", fmt.Errorf("bad table name %q", spec)
	}
	switch typ {
	case "texthash", "hash", "btree", "lmdb", "cdb":
		return typ, path, nil
	}
	return "", "", fmt.Errorf("%s: cannot edit %s tables; change the table with its own tools", spec, typ)
}

// Edit returns the table source data with user's entry set to value
// (removed when value is ""), and whether user had an entry. The key
// matches case-insensitively, as lookups fold keys; every other line,
// comments and continuation lines included, is kept byte for byte. A new
// entry is appended.
func Edit(data []byte, user, value string) ([]byte, bool) {
	var out bytes.Buffer
	found := false
	skipping := false // inside a replaced entry's continuation lines
	lines := bytes.SplitAfter(data, []byte("\n"))
	for _, l := range lines {
		if len(l) == 0 {
			continue
		}
		if skipping && (l[0] == ' ' || l[0] == '\t') && len(bytes.TrimSpace(l)) > 0 {
			continue
		}
		skipping = false
		if key := lineKey(l); key != "" && strings.EqualFold(key, user) {
			skipping = true
			if !found && value != "" {
				out.WriteString(user + " " + value + "\n")
			}
			found = true
			continue
		}
		out.Write(l)
	}
	if !found && value != "" {
		if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteByte('\n')
		}
		out.WriteString(user + " " + value + "\n")
	}
	return out.Bytes(), found
}

// lineKey is the key of an entry's first line ("" for comments, blank and
// continuation lines), postmap(1)'s syntax.
func lineKey(l []byte) string {
	if len(l) == 0 || l[0] == ' ' || l[0] == '\t' || l[0] == '#' {
		return ""
	}
	f := bytes.Fields(l)
	if len(f) == 0 {
		return ""
	}
	return string(f[0])
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, fsynced, renamed over it, the directory fsynced. A new file is
// mode 0600 (the values are password hashes); an existing one keeps its
// mode and owner.
func writeAtomic(path string, data []byte) error {
	mode := os.FileMode(0o600)
	uid, gid := -1, -1
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil && !errors.Is(err, syscall.EPERM) {
			return fail(err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// readPassword reads the new password: from a terminal with echo off,
// twice; otherwise (or with -p) one line from standard input.
func readPassword(env *cli.Env, noPrompt bool) ([]byte, error) {
	f, isFile := env.Stdin.(*os.File)
	if !noPrompt && isFile && isTerminal(f) {
		pw, err := promptNoEcho(env, f, "Password: ")
		if err != nil {
			return nil, err
		}
		again, err := promptNoEcho(env, f, "Again (for verification): ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("passwords do not match")
		}
		clear(again)
		return checkPassword(pw)
	}
	line, err := bufio.NewReader(io.LimitReader(env.Stdin, maxPassword+2)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return checkPassword(bytes.TrimRight(line, "\r\n"))
}

func checkPassword(pw []byte) ([]byte, error) {
	switch {
	case len(pw) == 0:
		return nil, errors.New("empty password")
	case len(pw) > maxPassword:
		return nil, fmt.Errorf("password longer than %d bytes", maxPassword)
	}
	return pw, nil
}

func isTerminal(f *os.File) bool {
	var t syscall.Termios
	return ioctl(f.Fd(), syscall.TCGETS, &t) == nil
}

func ioctl(fd uintptr, req uint, t *syscall.Termios) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(t))); e != 0 {
		return e
	}
	return nil
}

// promptNoEcho turns the terminal's echo off for one line, and back on
// whatever happens.
func promptNoEcho(env *cli.Env, f *os.File, prompt string) ([]byte, error) {
	var old syscall.Termios
	if err := ioctl(f.Fd(), syscall.TCGETS, &old); err != nil {
		return nil, err
	}
	noEcho := old
	noEcho.Lflag &^= syscall.ECHO
	noEcho.Lflag |= syscall.ICANON | syscall.ECHONL
	if err := ioctl(f.Fd(), syscall.TCSETS, &noEcho); err != nil {
		return nil, err
	}
	defer ioctl(f.Fd(), syscall.TCSETS, &old)
	fmt.Fprint(env.Stderr, prompt)
	var line []byte
	b := make([]byte, 1)
	for len(line) <= maxPassword {
		n, err := f.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				return bytes.TrimRight(line, "\r"), nil
			}
			line = append(line, b[0])
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("password longer than %d bytes", maxPassword)
}
