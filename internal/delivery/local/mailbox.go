package local

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/delivery/maildir"
	"moat/internal/delivery/mbox"
)

// outputLimit is how much command output a bounce or defer reason keeps
// (Postfix keeps a few hundred bytes of it in the log line too).
const outputLimit = 2048

// mailbox is local(8)'s deliver_mailbox(): mailbox_transport_maps,
// mailbox_transport (for every recipient, known or not), then, for a
// user in the passwd file, mailbox_command_maps, mailbox_command,
// home_mailbox or mail_spool_directory. It returns false for an unknown
// user.
func (j *job) mailbox(st attrs) bool {
	return j.doMailbox(st, j.planMailbox(st))
}

// mboxPlan is what deliver_mailbox() will do for a recipient, decided
// without doing it, so that a mailbox write can go to the executor in
// one request with the .forward read that comes before it.
type mboxPlan struct {
	unknown   bool   // not a local user: deliver_unknown()
	transport string // pass to this transport
	dsn       string // fail with dsn and reason (warning first, if any)
	reason    string
	warning   string
	cmdAcct   *account // run cmd as mailbox_command with these rights
	cmd       string
	write     *mboxWrite // write the mailbox
}

// mboxWrite is a mailbox write: the executor's job and what to log.
type mboxWrite struct {
	creds asuser.Creds
	path  string
}

// planMailbox decides deliver_mailbox()'s action for st with table and
// passwd lookups only: nothing is written, run or logged.
func (j *job) planMailbox(st attrs) mboxPlan {
	set := j.a.set
	if tr, found, err := lookupFirst(set.mailboxTransportMaps, st.user); err != nil {
		return mboxPlan{dsn: "4.3.0", reason: "mailbox_transport_maps lookup failure"}
	} else if found {
		return mboxPlan{transport: tr}
	}
	if set.mailboxTransport != "" {
		return mboxPlan{transport: set.mailboxTransport}
	}
	acct, err := j.a.set.users.lookupUser(st.user)
	if err != nil {
		return mboxPlan{dsn: "4.3.0", reason: err.Error()}
	}
	if acct == nil {
		return mboxPlan{unknown: true}
	}
	if acct.uid == 0 {
		// local(8) writes root's mailbox as root; moat never writes as
		// root, and default_privs cannot write root's mailbox.
		return mboxPlan{dsn: "4.3.0", reason: "mailbox delivery for uid 0 is not allowed; alias " + st.user + " to another user",
			warning: fmt.Sprintf("%s: mail for %s: moat does not deliver to the mailbox of uid 0; alias %s to a user in alias_maps", j.req.QueueID, st.rcpt, st.user)}
	}
	cmd, found, err := lookupFirst(set.mailboxCommandMaps, st.user)
	if err != nil {
		return mboxPlan{dsn: "4.3.0", reason: "mailbox_command_maps lookup failure"}
	}
	if !found {
		cmd = set.mailboxCommand
	}
	if cmd != "" {
		return mboxPlan{cmd: cmd, cmdAcct: acct}
	}
	creds := acct.creds()
	var path string
	if set.homeMailbox != "" {
		path = filepath.Join(acct.home, set.homeMailbox)
		if strings.HasSuffix(set.homeMailbox, "/") {
			path += "/"
		}
	} else {
		if strings.ContainsAny(st.user, "/") || st.user == "." || st.user == ".." {
			return mboxPlan{dsn: "5.1.1", reason: `unknown user: "` + st.user + `"`}
		}
		path = filepath.Join(set.spoolDir, st.user)
		if strings.HasSuffix(set.spoolDir, "/") {
			path += "/"
		}
		if gid, ok := spoolGroup(set.spoolDir); ok {
			creds.Groups = append(creds.Groups, gid)
		}
	}
	return mboxPlan{write: &mboxWrite{creds: creds, path: path}}
}

// doMailbox carries out a plan; false is an unknown user.
func (j *job) doMailbox(st attrs, p mboxPlan) bool {
	switch {
	case p.unknown:
		return false
	case p.transport != "":
		j.pass(st, p.transport)
	case p.dsn != "":
		if p.warning != "" {
			j.warn("%s", p.warning)
		}
		j.fail(p.dsn, p.reason)
	case p.cmd != "":
		sub := st
		sub.rights = p.cmdAcct
		j.command(sub, p.cmd, true)
	case p.write != nil:
		j.writeMailbox(st, p.write.creds, p.write.path, true)
	}
	return true
}

// writeMailbox writes one Maildir (path ending in "/") or mbox file as
// creds. mailbox says it is the user's mailbox rather than a /file
// target, which changes the log text and the Delivered-To: policy.
func (j *job) writeMailbox(st attrs, creds asuser.Creds, path string, mailbox bool) {
	job, ok := j.mailboxJob(st, creds, path, mailbox)
	if !ok {
		return
	}
	file, err := j.a.run.DeliverFile(j.ctx, creds, job, j.req.Content())
	j.wrote(job, creds, path, file, mailbox, err)
}

// mailboxJob builds the executor's job for writeMailbox; false means the
// write was refused (and recorded as failed).
func (j *job) mailboxJob(st attrs, creds asuser.Creds, path string, mailbox bool) (asuser.Job, bool) {
	set := j.a.set
	rcptHdr := strings.ToLower(j.delivered)
	if !mailbox && !set.hdrFile {
		rcptHdr = ""
	}
	orig := ""
	if set.origRcptHdr {
		orig = j.origRcpt
	}
	var job asuser.Job
	if strings.HasSuffix(path, "/") {
		job = asuser.Job{Kind: asuser.KindMaildir, Path: strings.TrimSuffix(path, "/"), Maildir: maildir.Options{
			ReturnPath:    true,
			Sender:        st.sender,
			OrigRecipient: orig,
			Recipient:     rcptHdr,
			SizeLimit:     set.sizeLimit,
			Key:           j.mailboxKey(),
			Arrival:       j.req.Envelope.Arrival,
			Stage:         j.a.run.StagesMaildir(),
		}}
	} else {
		job = asuser.Job{Kind: asuser.KindMbox, Path: path, Mbox: mbox.Options{
			Sender:        st.sender,
			Time:          j.a.d.Now(),
			ReturnPath:    true,
			Recipient:     rcptHdr,
			OrigRecipient: orig,
			SizeLimit:     set.sizeLimit,
			Create:        true,
		}}
		if mailbox {
			job.Mbox.Fcntl, job.Mbox.Flock, job.Mbox.DotLock = set.lockFcntl, set.lockFlock, set.lockDot
		} else {
			// A /file target: no dot-lock in a directory the user may
			// not write (local(8) locks files with the internal lock).
			job.Mbox.Fcntl = true
		}
	}
	if mailbox && job.Kind == asuser.KindMbox && set.strictOwner {
		// strict_mailbox_ownership: a mailbox file that is not the
		// recipient's (a mistake, or someone else's trap) defers.
		if fi, err := os.Lstat(path); err == nil {
			if uid, _ := statUID(fi); uid != creds.UID {
				j.warn("%s: mailbox %s is owned by uid %d, not by %s", j.req.QueueID, path, uid, creds.User)
				j.fail("4.2.0", "mailbox "+path+": wrong ownership")
				return job, false
			}
		}
	}
	return job, true
}

// wrote records the outcome of a mailboxJob written as creds into file.
func (j *job) wrote(job asuser.Job, creds asuser.Creds, path, file string, mailbox bool, err error) {
	if err != nil {
		j.failErr(err, "4.3.0")
		return
	}
	switch {
	case job.Kind == asuser.KindMaildir:
		if job.Maildir.Stage {
			j.out.commits = append(j.out.commits, staged{creds: creds, dir: job.Path, name: filepath.Base(file)})
		}
		j.ok("delivered to maildir", true)
	case mailbox:
		j.ok("delivered to mailbox", false)
	default:
		j.ok("delivered to file: "+path, false)
	}
}

// file is a /file target of an alias, .forward or :include: file.
func (j *job) file(st attrs, path string) {
	if j.beenHere("file " + path) {
		return
	}
	if path == "/dev/null" {
		j.ok("delivered to file: /dev/null", false)
		return
	}
	j.writeMailbox(st, j.rightsFor(st).creds(), path, false)
}

// rightsFor returns the account a file or command target runs as: the
// expansion's owner, default_privs when that is root or unknown.
func (j *job) rightsFor(st attrs) account {
	if st.rights == nil || st.rights.uid == 0 {
		return j.a.set.defaultPriv
	}
	return *st.rights
}

// pass hands the recipient to a mailbox or fallback transport (local(8)
// deliver_pass). One pass per recipient is expressible in a Result; a
// second local user to pass on gets a new message instead.
func (j *job) pass(st attrs, transport string) {
	if !strings.Contains(transport, ":") {
		transport += ":" + st.domain
	}
	addr := strings.TrimPrefix(st.rcpt, `\`)
	if j.out.pass == "" {
		j.out.pass = transport
		if addr != j.rcpt.Address {
			j.out.passAddr = addr
		}
		return
	}
	if j.out.pass == transport && (j.out.passAddr == addr || (j.out.passAddr == "" && addr == j.rcpt.Address)) {
		return
	}
	j.indirect(st, addr)
}

// unknown is local(8)'s deliver_unknown(): fallback_transport_maps,
// fallback_transport, luser_relay, or a bounce.
func (j *job) unknown(st attrs) {
	set := j.a.set
	if tr, found, err := lookupFirst(set.fallbackMaps, st.user); err != nil {
		j.fail("4.3.0", "fallback_transport_maps lookup failure")
		return
	} else if found {
		j.pass(st, tr)
		return
	}
	if set.fallbackTransport != "" {
		j.pass(st, set.fallbackTransport)
		return
	}
	if set.luserRelay != "" {
		dest, stat := expandLocal(set.luserRelay, j.macros(st, nil), "")
		if stat&config.StatError == 0 && strings.TrimSpace(dest) != "" {
			sub := st
			sub.unmatched = ""
			sub.expType = expAlias
			sub.expFrom = st.local
			for _, t := range splitTargets(dest) {
				j.address(sub, internalize(t))
			}
			return
		}
	}
	j.fail("5.1.1", `unknown user: "`+st.user+`"`)
}

func splitTargets(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func lookupFirst(ts []namedTable, key string) (string, bool, error) {
	for _, t := range ts {
		v, found, err := t.t.Lookup(key)
		if err != nil || found {
			return strings.TrimSpace(v), found, err
		}
	}
	return "", false, nil
}

// macros returns the forward_path / luser_relay values for st; acct may
// be nil (luser_relay is for users without an account).
func (j *job) macros(st attrs, acct *account) macros {
	m := macros{user: st.user, recipient: strings.TrimPrefix(st.rcpt, `\`), extension: st.ext,
		domain: st.domain, local: st.local, delimiter: st.delim}
	if m.delimiter == "" && j.a.set.delimiters != "" {
		m.delimiter = j.a.set.delimiters[:1]
	}
	if acct != nil {
		m.home, m.shell = acct.home, acct.shell
	}
	return m
}

// command runs a |command target or mailbox_command as local(8) does:
// /bin/sh -c (or local_command_shell) with local(8)'s environment, the
// message on standard input with a From_ line and Return-Path:,
// X-Original-To: and Delivered-To: headers, lines ending in LF.
func (j *job) command(st attrs, cmd string, mailbox bool) {
	set := j.a.set
	if j.beenHere(fmt.Sprintf("command %d %s", j.rightsFor(st).uid, cmd)) {
		return
	}
	acct := j.rightsFor(st)
	m := j.macros(st, &acct)
	dir := ""
	if set.execDir != "" {
		d, stat := expandLocal(set.execDir, m, set.dirFilter)
		if stat&config.StatError != 0 {
			j.fail("4.3.5", "mail system configuration error")
			return
		}
		dir = d
	} else if mailbox || st.expType == expForward {
		dir = acct.home
	}
	argv := []string{"/bin/sh", "-c", cmd}
	if set.shell != "" {
		argv = append(strings.Fields(set.shell), cmd)
	}
	stdin, err := j.commandInput(st)
	if err != nil {
		j.fail("4.3.0", err.Error())
		return
	}
	res := j.a.run.Run(j.ctx, asuser.Command{
		Creds:       acct.creds(),
		Argv:        argv,
		Env:         j.environ(st, acct),
		Dir:         dir,
		Stdin:       stdin,
		TimeLimit:   set.timeLimit,
		OutputLimit: outputLimit,
	})
	if dsn, reason, failed := commandOutcome(res, cmd); failed {
		j.fail(dsn, reason)
		return
	}
	j.ok("delivered to command: "+cmd, false)
}

// commandOutcome maps how a command ended to a DSN and reason as
// Postfix's pipe_command() does; failed is false for success.
func commandOutcome(res asuser.CommandResult, cmd string) (dsn, reason string, failed bool) {
	out := printableOutput(res.Output)
	withOut := func(s string) string {
		if out != "" {
			return s + ". Command output: " + out
		}
		return s
	}
	switch {
	case res.Err != nil:
		return "4.3.0", "Command failed: " + res.Err.Error() + `: "` + cmd + `"`, true
	case res.TimedOut:
		// pipe_command() bounces (5.3.0); moat defers, as its pipe(8)
		// does: a hung command is not the message's fault, and
		// maximal_queue_lifetime still ends the retries.
		return "4.3.0", withOut(`Command time limit exceeded: "` + cmd + `"`), true
	case res.Signal != 0:
		return "4.3.0", withOut("Command died with signal " + strconv.Itoa(res.Signal) + `: "` + cmd + `"`), true
	case res.Status == 0:
		return "", "", false
	}
	// A command may say what went wrong as "D.S.N text" (local(8)
	// "EXTERNAL COMMAND DELIVERY"): that takes precedence.
	if d, text, ok := leadingDSN(out); ok {
		return d, text, true
	}
	d, _, text := delivery.Sysexit(res.Status)
	if res.Status >= 64 && res.Status <= 78 {
		return d, withOut(text), true
	}
	return d, withOut("Command died with status " + strconv.Itoa(res.Status) + `: "` + cmd + `"`), true
}

// leadingDSN splits "4.2.2 mailbox full" into its RFC 3463 status and
// text.
func leadingDSN(s string) (dsn, text string, ok bool) {
	word, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return "", "", false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return "", "", false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return "", "", false
			}
		}
	}
	if parts[0] == "2" {
		return "", "", false
	}
	text = strings.TrimSpace(rest)
	if text == "" {
		text = word
	}
	return word, text, true
}

// printableOutput makes command output fit a log line: one line, no
// control characters.
func printableOutput(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// environ is local(8)'s command environment (local(8) "EXTERNAL COMMAND
// DELIVERY"), each value passed through command_expansion_filter.
func (j *job) environ(st attrs, acct account) []string {
	set := j.a.set
	env := []string{"PATH=/usr/bin:/bin"}
	for _, name := range set.exportEnv {
		// export_environment takes "name" (from moat's own
		// environment) and "name=value" (postconf(5)).
		if strings.Contains(name, "=") {
			env = append(env, name)
		} else if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	add := func(name, value string) {
		env = append(env, name+"="+filterChars(value, set.cmdFilter))
	}
	e := j.req.Envelope
	add("HOME", acct.home)
	add("SHELL", acct.shell)
	add("LOGNAME", st.user)
	add("USER", st.user)
	if st.ext != "" {
		add("EXTENSION", st.ext)
	}
	add("DOMAIN", st.domain)
	add("LOCAL", st.local)
	add("RECIPIENT", strings.TrimPrefix(st.rcpt, `\`))
	add("SENDER", st.sender)
	add("ORIGINAL_RECIPIENT", j.origRcpt)
	if st.delim != "" {
		add("RECIPIENT_DELIMITER", st.delim)
	}
	add("CLIENT_ADDRESS", e.ClientAddr)
	add("CLIENT_HOSTNAME", e.ClientName)
	add("CLIENT_HELO", e.Helo)
	add("CLIENT_PROTOCOL", e.Protocol)
	if e.SASLUser != "" {
		add("SASL_USERNAME", e.SASLUser)
	}
	return env
}

// commandInput is the message as a command reads it (Postfix's
// mail_copy() with MAIL_COPY_FROM, RETURN, ORIG_RCPT and, per
// prepend_delivered_header, DELIVERED): no ">From " quoting and no blank
// line at the end, lines ending in LF.
func (j *job) commandInput(st attrs) (io.Reader, error) {
	set := j.a.set
	var h strings.Builder
	from := st.sender
	if from == "" {
		from = "MAILER-DAEMON"
	}
	h.WriteString("From " + from + "  " + j.a.d.Now().Format(time.ANSIC) + "\n")
	h.WriteString("Return-Path: <" + st.sender + ">\n")
	if set.origRcptHdr {
		h.WriteString("X-Original-To: " + j.origRcpt + "\n")
	}
	if set.hdrCommand {
		h.WriteString("Delivered-To: " + strings.ToLower(j.delivered) + "\n")
	}
	return io.MultiReader(strings.NewReader(h.String()), &lfReader{r: bufio.NewReader(j.req.Content())}), nil
}

// lfReader turns the queue's CRLF line ends into LF.
type lfReader struct {
	r    *bufio.Reader
	cr   bool // a CR was read and not yet written
	done error
}

func (l *lfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if l.done != nil {
			break
		}
		c, err := l.r.ReadByte()
		if err != nil {
			l.done = err
			if l.cr {
				p[n] = '\r'
				n++
				l.cr = false
			}
			break
		}
		if l.cr {
			l.cr = false
			if c != '\n' {
				p[n] = '\r'
				n++
				if n == len(p) {
					_ = l.r.UnreadByte()
					break
				}
			}
		}
		if c == '\r' {
			l.cr = true
			continue
		}
		p[n] = c
		n++
	}
	if n == 0 && l.done != nil {
		return 0, l.done
	}
	return n, nil
}
