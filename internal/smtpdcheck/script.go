// Package smtpdcheck runs Postfix's smtpd_check test scripts against moat's
// restriction code. Postfix builds smtpd_check.c with -DTEST into a small
// program that reads commands on standard input ("client NAME ADDR",
// "helo NAME", "mail ADDR", "rcpt ADDR", parameter and restriction-list
// settings), evaluates the real restriction lists and prints OK or the SMTP
// reply, with the reject records on standard error; postfix/src/smtpd's
// *.in and *.ref files are scripts and their expected output. This package
// reads the same language (Parse) and drives internal/restrict with an
// smtpd.View (Runner), so the .ref files become moat's acceptance test
// (issue 6, item 6; /work/shared/postfix-tests/MANIFEST.md).
package smtpdcheck

import (
	"strconv"
	"strings"

	"moat/internal/config"
)

// Kind is what one script line asks for.
type Kind int

// The kinds of script line, after smtpd_check.c's main() of Postfix 3.7.
const (
	// Empty is a blank line: echoed, nothing else.
	Empty Kind = iota
	// Comment is a line starting with "#": echoed, nothing else.
	Comment
	// Shell is a "!command" line; Postfix runs it with system(3). moat
	// does not run shell commands from scripts.
	Shell
	// Client is "client NAME ADDR [STATUS]": set the client, run the
	// client restrictions.
	Client
	// Helo, Mail, Rcpt and Etrn run the checks of that command.
	Helo
	Mail
	Rcpt
	Etrn
	// Restrictions is "client_restrictions LIST" and the like (without
	// Postfix's smtpd_ prefix); Name is the full parameter name.
	Restrictions
	// Class is "restriction_class NAME,LIST".
	Class
	// Param is "NAME VALUE" for any other parameter; whether NAME is one
	// is for the Runner to decide.
	Param
	// Fingerprint is "fingerprint FP": the client presented a TLS
	// certificate with that fingerprint.
	Fingerprint
	// FlushDNS is "flush_dnsxl_cache": forget cached DNS list answers.
	FlushDNS
	// Rewrite is "rewrite" (smtpd_check_rewrite, local_header_rewrite_clients).
	Rewrite
	// Bad is anything else: smtpd_check answers "bad command".
	Bad
)

// Command is one parsed script line.
type Command struct {
	Kind Kind
	// Args are the whitespace-separated words, "{...}" kept as one word
	// with its braces (Postfix's argv_splitq(..., "{}")).
	Args []string
	// Name and Value: the client name and address (Client), the HELO
	// name, the address without surrounding <> (Mail, Rcpt), the ETRN
	// domain, the parameter name and value (Restrictions, Param), the
	// class name and its list (Class), the fingerprint.
	Name, Value string
	// Status is the client's peer code (smtpd.h SMTPD_PEER_CODE_*): the
	// third argument, or 4 for the name "unknown" and 2 otherwise.
	Status int
}

// restrictionParam maps smtpd_check's short list names to main.cf's.
func restrictionParam(short string) (string, bool) {
	switch short {
	case "client_restrictions", "helo_restrictions", "sender_restrictions",
		"relay_restrictions", "recipient_restrictions", "etrn_restrictions",
		"data_restrictions", "end_of_data_restrictions":
		return "smtpd_" + short, true
	}
	return "", false
}

// Split breaks a script line into words as smtpd_check does (argv_splitq
// on blanks, "{...}" groups kept whole, commas not separators).
func Split(line string) []string { return config.SplitWords(line) }

// trimAddr strips one pair of surrounding angle brackets, as smtpd_check's
// TRIM_ADDR does ("<>" is the null address).
func trimAddr(s string) string {
	if strings.HasPrefix(s, "<") {
		s = s[1:]
		s = strings.TrimSuffix(s, ">")
	}
	return s
}

// Parse reads one script line (without its newline). Command names are
// matched without regard to case, as smtpd_check's strcasecmp does.
func Parse(line string) Command {
	if strings.HasPrefix(line, "#") {
		return Command{Kind: Comment}
	}
	if strings.HasPrefix(line, "!") {
		return Command{Kind: Shell, Value: line[1:]}
	}
	args := Split(line)
	c := Command{Kind: Bad, Args: args}
	if len(args) == 0 {
		c.Kind = Empty
		return c
	}
	verb := strings.ToLower(args[0])
	switch len(args) {
	case 1:
		switch verb {
		case "flush_dnsxl_cache":
			c.Kind = FlushDNS
		case "rewrite":
			c.Kind = Rewrite
		}
	case 3, 4:
		if verb != "client" {
			break
		}
		c.Kind, c.Name, c.Value = Client, args[1], args[2]
		switch {
		case len(args) == 4:
			// smtpd_check uses atoi(): digits only, anything else 0.
			n, err := strconv.Atoi(args[3])
			if err != nil || n < 0 {
				n = 0
			}
			c.Status = n
		case strings.EqualFold(args[1], "unknown"):
			c.Status = 4
		default:
			c.Status = 2
		}
	case 2:
		c.Name, c.Value = verb, args[1]
		switch verb {
		case "helo":
			c.Kind, c.Name = Helo, args[1]
		case "mail":
			c.Kind, c.Name = Mail, trimAddr(args[1])
		case "rcpt":
			c.Kind, c.Name = Rcpt, trimAddr(args[1])
		case "etrn":
			c.Kind, c.Name = Etrn, args[1]
		case "fingerprint":
			c.Kind, c.Name = Fingerprint, args[1]
		case "restriction_class":
			// "NAME,LIST": the name ends at the first separator
			// (RESTRICTION_SEPARATORS: blanks and commas).
			name, list, _ := strings.Cut(args[1], ",")
			c.Kind, c.Name, c.Value = Class, strings.TrimSpace(name), list
			if c.Name == "" {
				c.Kind = Bad
			}
		default:
			if full, ok := restrictionParam(verb); ok {
				c.Kind, c.Name = Restrictions, full
			} else {
				c.Kind = Param
			}
		}
	}
	return c
}
