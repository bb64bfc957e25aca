package local

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"moat/internal/aliases"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// maxLevel bounds alias, :include: and .forward nesting, as local(8)
// does ("alias database loop", level > 100).
const maxLevel = 100

// attrs is local(8)'s per-level delivery state (its LOCAL_STATE
// msg_attr): what is delivered at this level of alias or .forward
// expansion, on whose behalf, and with whose rights.
type attrs struct {
	rcpt   string // the address delivered at this level
	sender string // the envelope sender of forwarded copies
	// owner is set once an owner- alias, an :include: file or a .forward
	// file took responsibility: local addresses found below it are
	// forwarded as new mail rather than delivered here.
	owner   string
	expType expMask // what expansion produced rcpt (0: the queue manager)
	expFrom string  // the name being expanded when rcpt was found
	level   int
	// unmatched is the address extension still to propagate to targets
	// (propagate_unmatched_extensions).
	unmatched string
	// rights is whose rights files and commands use: nil means the
	// expansion is root's (a root-owned alias table), which local(8)
	// maps to default_privs.
	rights *account

	local, domain, user, ext, delim string
}

// job is the delivery of one request recipient: the outcome of every
// action its expansion leads to, and the forwarded copies still to send.
type job struct {
	a         *Agent
	ctx       context.Context
	req       *delivery.Request
	rcpt      delivery.Recipient
	delivered string // Delivered-To: (frozen_delivered_to: the top recipient)
	origRcpt  string // X-Original-To:
	seen      map[string]bool
	dup       map[string]bool

	out      outcome
	forwards []*fwdGroup
	// maildirs counts keyed Maildir writes, so each gets its own key.
	maildirs int
}

// outcome folds the results of one recipient's actions: any temporary
// failure defers the recipient, else any permanent one bounces it (as
// local(8) settles each action and the queue manager the recipient).
type outcome struct {
	state       queue.RcptState
	dsn, reason string
	reasons     []string
	actions     int
	onlyMaildir bool
	pass        string
	passAddr    string
	// commits are the Maildir deliveries staged in tmp/
	// (maildir.Options.Stage), which Result.Commit commits.
	commits []staged
}

// staged is one staged Maildir delivery: the Maildir, the file's name,
// and the identity that wrote it.
type staged struct {
	creds     asuser.Creds
	dir, name string
}

type fwdGroup struct {
	sender  string
	isOwner bool // sender is an owner- alias: DSN parameters not passed on
	addrs   []string
}

func (j *job) warn(format string, args ...any) {
	if j.a.d.Log != nil {
		j.a.d.Log.Warning(format, args...)
	}
}

// fail records a failed action.
func (j *job) fail(dsn, reason string) {
	j.out.actions++
	j.out.onlyMaildir = false
	temp := strings.HasPrefix(dsn, "4")
	switch {
	case temp && j.out.state != queue.RcptDeferred:
		j.out.state, j.out.dsn, j.out.reason = queue.RcptDeferred, dsn, reason
	case !temp && j.out.state != queue.RcptDeferred && j.out.state != queue.RcptBounced:
		j.out.state, j.out.dsn, j.out.reason = queue.RcptBounced, dsn, reason
	}
}

// failErr records a failed mailbox, file or command action.
func (j *job) failErr(err error, def string) {
	if de, ok := err.(*delivery.Error); ok {
		j.fail(de.DSN, de.Text)
		return
	}
	j.fail(def, err.Error())
}

// ok records a successful action.
func (j *job) ok(reason string, maildir bool) {
	if j.out.actions == 0 {
		j.out.onlyMaildir = maildir
	} else {
		j.out.onlyMaildir = false
	}
	j.out.actions++
	j.out.reasons = append(j.out.reasons, reason)
}

func (j *job) result() delivery.Result {
	r := j.outcome()
	if commits := j.out.commits; len(commits) > 0 {
		run := j.a.run
		r.Commit = func(ctx context.Context) error {
			for _, c := range commits {
				if err := run.Commit(ctx, c.creds, c.dir, c.name); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return r
}

// outcome folds the recipient's actions into its Result.
func (j *job) outcome() delivery.Result {
	o := &j.out
	switch {
	case o.state == queue.RcptDeferred || o.state == queue.RcptBounced:
		return delivery.Result{State: o.state, DSN: o.dsn, Reason: o.reason}
	case o.pass != "":
		// The mailbox transport delivers; the other actions (a file
		// copy, forwarded copies) are done.
		return delivery.Result{Pass: o.pass, Address: o.passAddr}
	case o.actions == 0:
		// Every target was a duplicate of one already handled, or an
		// :include: file listed no one (Postfix's DSN text for an
		// expansion).
		return delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: "alias expanded"}
	}
	return delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0",
		Reason: strings.Join(o.reasons, "; "), Replayable: o.onlyMaildir && o.actions == 1}
}

// beenHere is local(8)'s duplicate filter for one recipient's expansion.
func (j *job) beenHere(key string) bool {
	if j.dup[key] {
		return true
	}
	if len(j.dup) < 10000 {
		j.dup[key] = true
	}
	return false
}

// recipient is local(8)'s deliver_recipient(): one address at one level.
func (j *job) recipient(st attrs) {
	st.level++
	if st.level > maxLevel {
		j.warn("%s: alias database loop for %s", j.req.QueueID, st.rcpt)
		j.fail("5.4.6", "alias database loop for "+st.rcpt)
		return
	}
	if j.beenHere(fmt.Sprintf("recipient %d %s", st.level, st.rcpt)) {
		return
	}
	if j.seen[strings.ToLower(st.rcpt)] {
		j.fail("5.4.6", "mail forwarding loop for "+st.rcpt)
		return
	}
	noAlias := false
	addr := st.rcpt
	if strings.HasPrefix(addr, `\`) {
		addr, noAlias = addr[1:], true
	}
	st.local, st.domain, st.user, st.ext, st.delim = splitRecipient(addr, j.a.set.delimiters, j.a.set.ownerSpec)
	st.unmatched = st.ext
	if st.user == "" {
		j.fail("5.1.3", `null username in "`+st.rcpt+`"`)
		return
	}
	j.deliverSwitch(st, noAlias)
}

// deliverSwitch is local(8)'s deliver_switch(): aliases, then .forward,
// then the mailbox, then the unknown-user fallbacks.
func (j *job) deliverSwitch(st attrs, noAlias bool) {
	set := j.a.set
	st.level++
	if noAlias {
		// \user: the mailbox, with no alias or .forward expansion.
		if !j.mailbox(st) {
			j.unknown(st)
		}
		return
	}
	// The full local part matched uses the extension up.
	full := st
	full.unmatched = ""
	if j.alias(full, st.local) {
		return
	}
	if st.ext != "" {
		ast := st
		ast.unmatched = ""
		if set.propAlias {
			ast.unmatched = st.ext
		}
		if j.alias(ast, st.user) {
			return
		}
	}
	// A local address found in an expansion is submitted as new mail, so
	// that it gets its own delivery status record, unless it names the
	// very user being expanded (an alias or .forward that lists its own
	// name means "this user's mailbox").
	if st.expType != 0 && st.expFrom != st.local && st.expFrom != st.user {
		j.indirect(st, st.rcpt)
		return
	}
	acct, err := j.a.set.users.lookupUser(st.user)
	if err != nil {
		j.fail("4.3.0", err.Error())
		return
	}
	if acct != nil {
		if j.a.set.requireHome {
			if _, err := os.Stat(acct.home); err != nil {
				j.fail("4.3.0", "cannot access home directory "+acct.home+": "+delivery.Strerror(err))
				return
			}
		}
		// The mailbox step is decided first (lookups only), so that a
		// mailbox write can go with the .forward read in one request.
		plan := j.planMailbox(st)
		if j.dotforward(st, acct, &plan) {
			return
		}
		if !j.doMailbox(st, plan) {
			j.unknown(st)
		}
		return
	}
	if !j.mailbox(st) {
		j.unknown(st)
	}
}

// alias is local(8)'s deliver_alias(): name in alias_maps. It reports
// whether the alias tables settled the recipient.
func (j *job) alias(st attrs, name string) bool {
	set := j.a.set
	if st.expFrom != "" && strings.EqualFold(st.expFrom, name) {
		return false
	}
	st.level++
	if st.level > maxLevel {
		j.warn("alias database loop for %s", name)
		j.fail("5.4.6", "alias database loop for "+name)
		return true
	}
	for _, t := range set.aliasMaps {
		value, found, err := t.t.Lookup(name)
		if err != nil {
			j.warn("%s: table lookup problem: %v", t.spec, err)
			j.fail("4.3.0", "alias database unavailable")
			return true
		}
		if !found {
			continue
		}
		st.expType = expAlias
		st.expFrom = name
		rights, err := j.tableRights(t)
		if err != nil {
			j.warn("cannot find alias database owner for %s", t.spec)
			j.fail("4.3.0", "cannot find alias database owner")
			return true
		}
		st.rights = rights
		if set.ownerSpec && !strings.HasPrefix(name, "owner-") {
			owner, found, err := j.lookupAlias("owner-" + name)
			if err != nil {
				j.fail("4.3.0", "alias database unavailable")
				return true
			}
			if found {
				canon := "owner-" + name
				if set.expandOwner {
					canon = internalize(firstTarget(owner))
				}
				canon = j.qualify(canon)
				st.owner, st.sender = canon, canon
			} else {
				st.owner = ""
			}
		}
		targets := aliases.Targets(value)
		if len(targets) == 0 {
			j.warn("no recipient in alias lookup result for %s", name)
			j.fail("4.3.0", "alias database unavailable")
			return true
		}
		j.tokens(st, targets)
		return true
	}
	return false
}

// lookupAlias looks name up in alias_maps, first table first.
func (j *job) lookupAlias(name string) (string, bool, error) {
	for _, t := range j.a.set.aliasMaps {
		v, found, err := t.t.Lookup(name)
		if err != nil || found {
			return v, found, err
		}
	}
	return "", false, nil
}

func firstTarget(value string) string {
	if t := aliases.Targets(value); len(t) > 0 {
		return t[0]
	}
	return value
}

// qualify appends @myorigin to an address without a domain, as
// trivial-rewrite's canonicalization does for forwarded mail.
func (j *job) qualify(addr string) string {
	if strings.Contains(addr, "@") || j.a.set.myorigin == "" {
		return addr
	}
	return addr + "@" + j.a.set.myorigin
}

// tokens delivers each target of an alias value, .forward or :include:
// file.
func (j *job) tokens(st attrs, targets []string) {
	for _, t := range targets {
		if j.ctx.Err() != nil {
			j.fail("4.3.0", "delivery interrupted: "+j.ctx.Err().Error())
			return
		}
		j.token(st, t)
	}
}

// token is local(8)'s deliver_token(): one target by its syntax
// (aliases(5)).
func (j *job) token(st attrs, target string) {
	set := j.a.set
	t := internalize(target)
	switch {
	case t == "":
		return
	case strings.HasPrefix(t, "|"):
		if set.cmdMask&st.expType == 0 {
			j.fail("5.7.1", "mail to command is restricted")
			return
		}
		j.command(st, strings.TrimSpace(t[1:]), false)
	case len(t) > 9 && strings.EqualFold(t[:9], ":include:"):
		j.include(st, strings.TrimSpace(t[9:]))
	case strings.HasPrefix(t, "/"):
		if set.fileMask&st.expType == 0 {
			j.fail("5.7.1", "mail to file is restricted")
			return
		}
		j.file(st, t)
	default:
		j.address(st, t)
	}
}

// address handles an address target: a local one is expanded again
// here (aliases first), any other is forwarded.
func (j *job) address(st attrs, addr string) {
	if st.unmatched != "" && st.delim != "" {
		// propagate_unmatched_extensions: user+ext aliased to joe goes
		// to joe+ext.
		lp, dom, hasAt := strings.Cut(addr, "@")
		if hasAt {
			addr = lp + st.delim + st.unmatched + "@" + dom
		} else {
			addr = lp + st.delim + st.unmatched
		}
	}
	if strings.HasPrefix(addr, `\`) {
		// \user: that user's mailbox, not another expansion.
		sub := st
		sub.rcpt = `\` + j.localForm(addr[1:], st.domain)
		j.recipient(sub)
		return
	}
	_, dom, _ := strings.Cut(addr, "@")
	local := dom == "" || strings.EqualFold(dom, st.domain)
	if !local {
		c, err := j.a.set.resolver.Domain(dom)
		if err != nil {
			j.fail("4.3.0", "address resolver failure for "+addr)
			return
		}
		local = c == resolve.Local
	}
	if !local {
		j.indirect(st, addr)
		return
	}
	sub := st
	sub.rcpt = j.localForm(addr, st.domain)
	j.recipient(sub)
}

// localForm gives a local address the recipient's domain when it has
// none, so forwarded copies and loop checks see a full address.
func (j *job) localForm(addr, domain string) string {
	if strings.Contains(addr, "@") {
		return addr
	}
	if domain != "" {
		return addr + "@" + domain
	}
	return j.qualify(addr)
}

// indirect is local(8)'s deliver_indirect(): addr is forwarded as new
// mail, with the other addresses of this sender in one message.
func (j *job) indirect(st attrs, addr string) {
	addr = j.qualify(addr)
	key := strings.ToLower(st.sender) + "\x00" + strings.ToLower(addr)
	if j.beenHere("forward " + key) {
		return
	}
	for _, g := range j.forwards {
		if g.sender == st.sender {
			g.addrs = append(g.addrs, addr)
			return
		}
	}
	j.forwards = append(j.forwards, &fwdGroup{sender: st.sender, isOwner: st.owner != "" && st.owner == st.sender, addrs: []string{addr}})
}

// tableRights returns whose rights an alias table's files and commands
// use: the table file's owner, or nil (default_privs) when root or
// mail_owner owns it. local(8) uses default_privs for root only; moat
// never runs a user's command as mail_owner either.
func (j *job) tableRights(t namedTable) (*account, error) {
	path := tablePath(t.spec)
	if path == "" {
		return nil, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil
	}
	uid, ok := statUID(fi)
	if !ok || uid == 0 || (j.a.set.hasMailOwner && int(uid) == j.a.set.mailOwnerUID) {
		return nil, nil
	}
	acct, err := j.a.set.users.lookupUID(uid)
	if err != nil || acct == nil {
		return nil, fmt.Errorf("no passwd entry for uid %d", uid)
	}
	return acct, nil
}

// tablePath is the file a table's owner is read from: the index for
// indexed types, the source for the text types, none for the rest.
func tablePath(spec string) string {
	typ, name, ok := strings.Cut(spec, ":")
	if !ok {
		return ""
	}
	switch typ {
	case "hash", "btree", "lmdb", "cdb":
		switch typ {
		case "hash", "btree":
			return name + ".db"
		case "lmdb":
			return name + ".lmdb"
		default:
			return name + ".cdb"
		}
	case "texthash", "regexp", "pcre", "cidr":
		return name
	}
	return ""
}

// internalize turns one aliases(5) target into the form local(8) acts
// on: a target quoted as a whole ("|cmd arg") unquoted, comments and
// display names of an address dropped, a quoted local part unquoted.
func internalize(t string) string {
	t = strings.TrimSpace(t)
	if len(t) >= 2 && t[0] == '"' && closingQuote(t) == len(t)-1 {
		return unquote(t[1 : len(t)-1])
	}
	if strings.HasPrefix(t, "|") || strings.HasPrefix(t, "/") || strings.HasPrefix(strings.ToLower(t), ":include:") {
		return t
	}
	// An address: comments out, the <route-addr> if any, quotes off.
	var b strings.Builder
	depth := 0
	inQuote := false
	angle := -1
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case inQuote:
			if c == '\\' && i+1 < len(t) {
				i++
				b.WriteByte(t[i])
			} else if c == '"' {
				inQuote = false
			} else {
				b.WriteByte(c)
			}
		case depth > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '"':
			inQuote = true
		case c == '(':
			depth++
		case c == '<':
			angle = b.Len()
		case c == '>':
			if angle >= 0 {
				return strings.TrimSpace(b.String()[angle:])
			}
		case c == ' ' || c == '\t':
		default:
			b.WriteByte(c)
		}
	}
	if angle >= 0 {
		return strings.TrimSpace(b.String()[angle:])
	}
	return b.String()
}

func closingQuote(t string) int {
	for i := 1; i < len(t); i++ {
		switch t[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mailboxKey is the idempotent Maildir key of this recipient's next
// Maildir write: the queue ID and recipient index, with a suffix from
// the second write on (an alias that lists its own name and a file).
func (j *job) mailboxKey() string {
	j.maildirs++
	k := j.req.QueueID + "." + strconv.Itoa(j.rcpt.Index)
	if j.maildirs > 1 {
		k += "." + strconv.Itoa(j.maildirs)
	}
	return k
}
