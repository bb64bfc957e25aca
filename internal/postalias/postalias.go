// Package postalias implements the postalias(1) command: postmap's engine
// with the aliases(5) source format, "name:<TAB>value" output, and the "@"
// entry Sendmail-compatible readers expect in a complete alias database.
package postalias

import (
	"moat/internal/cli"
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
