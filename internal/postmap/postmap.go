// Package postmap implements the postmap command.
package postmap

import "moat/internal/cli"

// Main runs postmap with args (without the program name) and returns the exit status.
func Main(env *cli.Env, prog string, args []string) int {
	return env.Fatalf(prog, "not implemented yet")
}
