package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"moat/internal/aliases"
	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// maxListFile bounds a .forward or :include: file: a mailing list of
// this size is already unusual, and the file is read whole.
const maxListFile = 4 << 20

// dotforward is local(8)'s deliver_dotforward(): the first forward_path
// file that exists and is safe, expanded with the user's rights. It
// reports whether the file settled the recipient (an empty file does
// not: "do not forward").
//
// When plan is a mailbox write, the reads and the write go to the
// executor as one request (asuser.Runner.DeliverUnlessFile): the write is
// done there only when no forward_path file exists, which is what
// local(8) would do next, and then dotforward reports the recipient
// settled. A file that exists is acted on here exactly as before, the
// later paths read one by one, and the mailbox left to the caller.
func (j *job) dotforward(st attrs, acct *account, plan *mboxPlan) bool {
	set := j.a.set
	// A user listed in her own .forward file gets the mailbox.
	if st.expType == expForward && (st.expFrom == st.user || st.expFrom == st.local) {
		return false
	}
	m := j.macros(st, acct)
	noExt := m
	noExt.extension = ""
	// The stock forward_path names $home/.forward twice for an address
	// without an extension ("$home/.forward${recipient_delimiter}
	// ${extension}, $home/.forward"): a path already tried gives the same
	// answer again, so it is not read twice (each read is a round trip
	// to the executor).
	type candidate struct{ tmpl, path string }
	var cands []candidate
	tried := make(map[string]bool, len(set.forwardPath))
	for _, tmpl := range set.forwardPath {
		path, stat := expandLocal(tmpl, m, set.fwdFilter)
		if stat&config.StatError != 0 || path == "" || tried[path] {
			continue
		}
		tried[path] = true
		if !filepath.IsAbs(path) {
			j.warn("forward_path entry %q expands to relative path %q: skipped", tmpl, path)
			continue
		}
		cands = append(cands, candidate{tmpl, path})
	}
	start := 0
	var first *asuser.Found
	if w := plan.write; w != nil && len(cands) > 0 && (strings.HasSuffix(w.path, "/") || !set.strictOwner) && sameCreds(w.creds, acct.creds()) {
		// (An mbox under strict_mailbox_ownership is checked before
		// its write, which must not come before the .forward; a
		// spool written with the spool's group as well must not lend
		// that group to the .forward read: those cases keep two
		// requests.)
		job, ok := j.mailboxJob(st, w.creds, w.path, true)
		if !ok {
			return true
		}
		paths := make([]string, len(cands))
		for i, c := range cands {
			paths[i] = c.path
		}
		found, err := j.a.run.DeliverUnlessFile(j.ctx, w.creds, paths, asuser.ReadOptions{Limit: maxListFile}, job, j.req.Content())
		if found.Index < 0 && asuser.Failed(err) {
			// The executor did not answer: whether a .forward exists
			// is unknown, so the recipient is deferred as an unread
			// .forward defers it.
			what := "cannot read file " + paths[0] + " or deliver to the mailbox"
			j.warn("%s: %v", what, err)
			j.fail("4.3.0", what+": "+err.Error())
			return true
		}
		if found.Index < 0 {
			j.wrote(job, w.creds, w.path, found.Path, true, err)
			return true
		}
		if job.Kind == asuser.KindMaildir {
			// The key was not used: the mailbox write after an
			// empty .forward takes it.
			j.maildirs--
		}
		start, first = found.Index, &found
	}
	for i := start; i < len(cands); i++ {
		tmpl, path := cands[i].tmpl, cands[i].path
		var data []byte
		var err error
		if first != nil && i == start {
			data, err = ownedFile(path, acct, first.File, first.Err)
		} else {
			data, err = j.readOwnedFile(path, acct)
		}
		if asuser.Failed(err) {
			// The file may well be there: unread, it is neither
			// absent nor empty (moat would deliver to the mailbox
			// what the user forwards).
			j.warn("cannot read file %s: %v", path, err)
			j.fail("4.3.0", "cannot read file "+path+": "+err.Error())
			return true
		}
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			j.warn("%v", err)
			continue
		}
		targets := parseForward(data, set.lineLimit)
		if len(targets) == 0 {
			return false
		}
		sub := st
		sub.expType = expForward
		sub.expFrom = st.user
		sub.rights = acct
		// Forwarded copies of a .forward go out as new mail (local(8):
		// the owner attribute is set by .forward processing).
		if sub.owner == "" {
			sub.owner = st.rcpt
		}
		// The extension is used up when the file named it
		// (.forward+ext); otherwise it propagates when told to.
		if plain, _ := expandLocal(tmpl, noExt, set.fwdFilter); st.ext != "" && plain != path {
			sub.unmatched = ""
		} else if !set.propForward {
			sub.unmatched = ""
		}
		j.tokens(sub, targets)
		return true
	}
	return false
}

// sameCreds says a and b are one identity: uid, gid and the same
// supplementary groups in the same order.
func sameCreds(a, b asuser.Creds) bool {
	return a.UID == b.UID && a.GID == b.GID && slices.Equal(a.Groups, b.Groups)
}

// readOwnedFile reads a .forward file as local(8) accepts it, with the
// user's rights (local(8) "SECURITY": the file is opened as the user, so
// a home directory of mode 0700 is no obstacle and no link the user
// makes reaches a file the user could not read): a regular file, not
// itself a symbolic link, owned by the user or root and writable by
// neither group nor others (moat is stricter than local(8), which
// refuses only world-writable files: a group-writable .forward lets the
// group run commands as the user). The read runs in the root executor
// when the queue manager is not root (asuser.Runner).
func (j *job) readOwnedFile(path string, acct *account) ([]byte, error) {
	f, err := j.a.run.ReadFile(j.ctx, acct.creds(), path, asuser.ReadOptions{Limit: maxListFile})
	return ownedFile(path, acct, f, err)
}

// ownedFile applies readOwnedFile's checks to a read's outcome.
func ownedFile(path string, acct *account, f asuser.File, err error) ([]byte, error) {
	switch {
	case asuser.Failed(err):
		return nil, err
	case errors.Is(err, os.ErrNotExist):
		return nil, os.ErrNotExist
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("file %s is a symbolic link: ignored", path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("cannot open file %s: %s", path, delivery.Strerror(err))
	case err != nil:
		return nil, err
	}
	if f.UID != 0 && f.UID != acct.uid {
		return nil, fmt.Errorf("file %s has bad owner uid %d", path, f.UID)
	}
	if f.Perm&0o022 != 0 {
		return nil, fmt.Errorf("file %s is group or world writable", path)
	}
	return f.Data, nil
}

// parseForward splits a .forward or :include: file into targets: each
// logical line (a line starting with whitespace continues the one
// before; lines starting with '#' are comments) has the syntax of an
// alias's right-hand side (local(8), aliases(5)). As in local(8), a
// logical line is cut into chunks of at most limit bytes
// (line_length_limit), which also bounds the tokenizer's work per chunk.
func parseForward(data []byte, limit int) []string {
	if limit <= 0 {
		limit = 2048
	}
	var targets []string
	var cur strings.Builder
	emit := func(chunk string) {
		for _, t := range aliases.Targets(chunk) {
			// A lone backslash tokenizes to nothing.
			if strings.TrimSpace(t) != "" {
				targets = append(targets, t)
			}
		}
	}
	flush := func() {
		s := cur.String()
		cur.Reset()
		for len(s) > limit {
			// Cut at a character boundary: an address is not split
			// inside a UTF-8 sequence.
			cut := limit
			for cut > 1 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			emit(s[:cut])
			s = s[cut:]
		}
		if s != "" {
			emit(s)
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			// A comment or blank line ends nothing in local(8)'s
			// readlline(); a continuation after it is still one line.
			continue
		}
		if aliases.IsSpace(line[0]) {
			cur.WriteByte(' ')
			cur.WriteString(trimmed)
			continue
		}
		flush()
		cur.WriteString(trimmed)
	}
	flush()
	return targets
}

// include is local(8)'s deliver_include(): the targets listed in an
// :include: file, with that file's owner's rights when the alias is
// root's.
func (j *job) include(st attrs, path string) {
	rights := st.rights
	if j.beenHere(fmt.Sprintf("include %d %s", j.rightsFor(st).uid, path)) {
		return
	}
	st.level++
	if st.level > maxLevel {
		j.fail("5.4.6", "alias database loop for "+st.rcpt)
		return
	}
	if !filepath.IsAbs(path) {
		j.warn(":include:%s uses a relative path", path)
		j.fail("5.3.5", "mail system configuration error")
		return
	}
	// local(8) opens the file with the alias owner's rights: root's for
	// a root-owned alias (then the file's owner lends its rights to
	// what the file lists, so the owner cannot take over default_privs),
	// the user's otherwise.
	readAs := asuser.Creds{}
	if rights != nil && rights.uid != 0 {
		readAs = rights.creds()
	}
	f, err := j.a.run.ReadFile(j.ctx, readAs, path, asuser.ReadOptions{Limit: maxListFile, Follow: true})
	switch {
	case asuser.Failed(err):
		j.warn("cannot read include file %s: %v", path, err)
		j.fail("4.3.0", "cannot read include file "+path+": "+err.Error())
		return
	case errors.Is(err, os.ErrNotExist):
		j.warn("unable to lookup :include: file %s: %s", path, delivery.Strerror(err))
		j.fail("5.3.5", "mail system configuration error")
		return
	case err != nil && strings.Contains(err.Error(), "not a regular file"):
		j.warn(":include: file %s is not a regular file", path)
		j.fail("5.3.5", "mail system configuration error")
		return
	case err != nil:
		j.warn("cannot open include file %s: %s", path, delivery.Strerror(err))
		j.fail("5.3.5", "mail system configuration error")
		return
	}
	if f.Perm&0o002 != 0 {
		j.warn(":include: file %s is world writable", path)
		j.fail("5.3.5", "mail system configuration error")
		return
	}
	if (rights == nil || rights.uid == 0) && f.UID != 0 {
		owner, err := j.a.set.users.lookupUID(f.UID)
		if err != nil || owner == nil {
			j.warn("%s: cannot find :include: file owner username", path)
			j.fail("4.3.5", "mail system configuration error")
			return
		}
		rights = owner
	}
	data := f.Data
	sub := st
	sub.expType = expInclude
	sub.expFrom = st.local
	sub.rights = rights
	if sub.owner == "" {
		sub.owner = st.rcpt
	}
	if !j.a.set.propInclude {
		sub.unmatched = ""
	}
	j.tokens(sub, parseForward(data, j.a.set.lineLimit))
}

// flushForwards submits the forwarded copies: one new message per
// envelope sender, "Delivered-To: RCPT" first so that the copy coming
// back is recognized as a loop (local(8) "MAIL FORWARDING").
func (j *job) flushForwards() {
	for _, g := range j.forwards {
		id, err := j.submit(g)
		if err != nil {
			j.warn("%s: cannot forward mail for %s: %v", j.req.QueueID, j.rcpt.Address, err)
			j.fail("4.3.0", "cannot forward mail: "+err.Error())
			return
		}
		j.ok("forwarded as "+id, false)
	}
}

func (j *job) submit(g *fwdGroup) (string, error) {
	q := j.a.d.Queue
	if q == nil {
		return "", errors.New("no queue to forward to")
	}
	w, err := q.NewMessage()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	if j.a.set.hdrForward {
		if _, err := w.WriteString("Delivered-To: " + strings.ToLower(j.delivered) + "\r\n"); err != nil {
			return "", err
		}
	}
	if _, err := io.Copy(w, j.req.Content()); err != nil {
		return "", err
	}
	orig := j.req.Envelope
	env := queue.Envelope{
		Sender:     g.sender,
		ClientName: orig.ClientName,
		ClientAddr: orig.ClientAddr,
		Helo:       orig.Helo,
		Protocol:   orig.Protocol,
		SASLUser:   orig.SASLUser,
		MessageID:  orig.MessageID,
		Arrival:    j.a.d.Now(),
		Flags:      orig.Flags &^ queue.FlagHold,
	}
	// RFC 3461 section 6.2.7.3: an alias passes ENVID, RET and ORCPT on,
	// and NOTIFY without SUCCESS; a mailing list (an owner- sender) does
	// not.
	notify := smtp.Notify(j.rcpt.Notify)
	if notify&smtp.NotifySuccess != 0 {
		notify &^= smtp.NotifySuccess
		if notify == 0 {
			notify = smtp.NotifyNever
		}
	}
	if !g.isOwner {
		env.EnvID, env.Ret = orig.EnvID, orig.Ret
	}
	for _, a := range g.addrs {
		r := queue.Recipient{Address: a}
		if !g.isOwner {
			r.ORCPT = j.rcpt.ORCPT
			r.Notify = notify
			// Logged as orig_to=, delivered as X-Original-To: the
			// address the mail was sent to before aliasing.
			if !strings.EqualFold(j.origRcpt, a) {
				r.Orig = j.origRcpt
			}
		}
		env.Recipients = append(env.Recipients, r)
	}
	if j.a.d.Rewrite != nil {
		if err := j.a.d.Rewrite(&env); err != nil {
			return "", err
		}
	}
	w.Envelope = env
	id, err := w.Commit()
	if err != nil {
		return "", err
	}
	if j.a.d.Wake != nil {
		j.a.d.Wake()
	}
	return id, nil
}
