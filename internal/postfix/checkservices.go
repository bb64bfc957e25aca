package postfix

import (
	"fmt"
	"os"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/mastercf"
	"moat/internal/restrict"
	"moat/internal/tlsconf"
)

// smtpdServices builds what every smtpd row of master.cf builds at start-up
// besides its tables: the restriction lists (names, arguments, classes and
// the open-relay guard) and the TLS server settings (certificates and keys).
// Postfix's `postfix check` does neither, so an unknown restriction shows
// only when mail arrives; moat refuses such a service at start, so check
// reports it first, naming the master.cf row.
//
// It runs only when nothing fatal was found before: restrict.New opens the
// same tables the table check has just judged, and a second report of a
// missing table would only repeat it. Key files are usually readable by
// root only, so TLS is checked only when check runs as the user that will
// start the mail system.
func (k *checker) smtpdServices(c *config.Config, mf *mastercf.File, o Options) {
	if mf == nil {
		return
	}
	for _, p := range k.probs {
		if p.Fatal {
			return
		}
	}
	utf8, _ := c.Bool("smtputf8_enable")
	for _, s := range mf.Services {
		if s.Command != "smtpd" {
			continue
		}
		where := fmt.Sprintf("%s, line %d: service %s/%s", mf.Path, s.Line, s.Name, s.Type)
		sc := c.WithOverrides(s.DaemonOverrides())
		mo := maps.Options{Fold: true, UTF8: utf8, Warn: func(string) {}}
		lists, err := restrict.New(sc, mo, nil)
		if err != nil {
			k.fatalf("%s: %v", where, err)
		} else {
			lists.Close()
		}
		if o.Euid != os.Geteuid() {
			continue
		}
		if _, err := tlsconf.NewServer(sc, func(msg string) { k.warnf("%s: %s", where, msg) }); err != nil {
			k.fatalf("%s: %v", where, err)
		}
	}
}
