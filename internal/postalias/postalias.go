// Package postalias implements the postalias(1) command: postmap's engine
// with the aliases(5) source format, "name:<TAB>value" output, and the "@"
// entry Sendmail-compatible readers expect in a complete alias database.
package postalias

import (
	"strings"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/postmap"
)

// Flavor is postalias(1)'s variant of the postmap engine. Its options are
// postalias's own: no -b/-h/-m/-F, which only make sense for postmap.
func Flavor() postmap.Flavor {
	return postmap.Flavor{
		Spec:      "c:d:finNopq:rsuUvw",
		Usage:     "[-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
		Parse:     postmap.ParseAliases,
		KeySuffix: ":",
		Sentinel:  true,
	}
}

// Main runs postalias with args (without the program name) and returns the
// exit status.
func Main(env *cli.Env, prog string, args []string) int {
	return postmap.Run(env, prog, args, Flavor(), postmap.RealBackend())
}

// Newaliases rebuilds every table named by alias_database, what
// `newaliases` (Sendmail's `sendmail -bI`) does in Postfix: postalias runs
// once with the whole list. It takes no arguments; the configuration
// directory comes from MAIL_CONFIG or the default. cmd/moat has to
// register it for the `newaliases` name.
func Newaliases(env *cli.Env, prog string, args []string) int {
	if len(args) != 0 {
		return env.Fatalf(prog, "usage: %s", prog)
	}
	dir := env.ConfigDir("")
	cfg, err := config.Open(dir)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	list, err := cfg.GetErr("alias_database")
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	files := strings.FieldsFunc(list, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	if len(files) == 0 {
		return 0
	}
	return postmap.Run(env, prog, append([]string{"-c", dir}, files...), Flavor(), postmap.RealBackend())
}
