// Package local is moat's local(8) delivery agent: mail for the domains
// in mydestination goes through alias_maps, the recipient's .forward
// file, and then the recipient's mailbox (a mailbox transport such as
// Dovecot's LMTP, mailbox_command, home_mailbox, or the mail spool), in
// the order local(8) "DELIVERY METHOD CONTROLS" gives, or back to the
// sender as undeliverable (fallback_transport, luser_relay, 5.1.1).
//
// Every mailbox and file write and every command runs with the rights of
// the user it is done for (internal/delivery/asuser: a command in a
// child, a write or a file read on an OS thread of the root executor
// that carries only that user's file-system identity), never as root: the recipient for mailboxes, mailbox_command
// and .forward entries; the alias table's owner, or default_privs when
// root (or mail_owner) owns it, for aliases; the owner of an :include:
// file named by a root-owned alias (local(8) "DELIVERY RIGHTS").
// When the recipient's mailbox step is a write under her own identity,
// the forward_path reads and that write go to the executor as one
// request, done there only if no .forward exists (one round trip per
// ordinary delivery instead of two); the order and outcome are local(8)'s.
//
// One request recipient gives one Result. Aliases are expanded here,
// recursively; every address an expansion yields that is not itself an
// alias is forwarded as one new queue file per envelope sender, with a
// "Delivered-To:" header for loop detection ("forwarded as ID"). When
// a recipient has several targets, all must succeed for "sent"; any
// temporary failure defers the recipient, any permanent one bounces it.
// A retry after a deferral repeats the targets that had succeeded (a
// command, a file, a forwarded copy), as local(8) does ("BUGS": "may
// occasionally deliver more than once"); Maildir copies are keyed by
// queue ID and recipient, so they are not repeated.
//
// # Differences from Postfix
//
//   - A local user named in an alias (without an owner- alias) is
//     forwarded as a new message; local(8) delivers to that user in the
//     same process and logs to=<user>, orig_to=<alias>. The queue
//     manager's contract carries one result per request recipient, and
//     a separate queue file gives each user its own status record.
//   - `\user` targets: Postfix 3.7's tokenizer drops the backslash in
//     alias tables and .forward files alike, and so does moat's; a user
//     listing her own name (in her .forward, or an alias listing its own
//     name) gets her mailbox, as in local(8).
//   - A .forward file must not be group-writable (local(8) refuses only
//     world-writable ones), and symbolic links on its path are followed
//     only in directories owned by root: moat reads it as root, where
//     local(8) reads it with the user's rights. An :include: file named
//     from a .forward or a user-owned alias must be readable by that
//     user by its mode (moat's stand-in for opening it as the user).
//   - An alias table owned by mail_owner lends default_privs, not
//     mail_owner, to its commands and files: no user command runs as
//     mail_owner. maps.DaemonOptions refuses tables owned by others.
//   - The mailbox of uid 0 is not written (deferred with a warning):
//     local(8) writes root's mailbox as root. Alias root to a user.
//   - A command that exceeds command_time_limit is deferred (4.3.0),
//     where local(8) bounces (5.3.0), as moat's pipe(8) does.
//   - Commands run with /bin/sh -c (or local_command_shell) always;
//     local(8) runs a command without shell metacharacters directly.
//     The working directory is command_execution_directory, else the
//     user's home for mailbox_command and .forward commands, else "/"
//     (local(8): the queue directory).
//   - Only the first mailbox transport hand-off of a recipient is a
//     Result.Pass; another local user reached the same way is forwarded.
//   - biff (comsat notification) is not implemented. A .forward file
//     larger than 4 MB is ignored, an :include: file that large bounces
//     as a configuration error. duplicate_filter_limit is fixed at
//     10000.
package local
