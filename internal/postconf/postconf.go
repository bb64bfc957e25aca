// Package postconf implements the postconf command.
package postconf

import "moat/internal/cli"

// Main runs postconf with args (without the program name) and returns the exit status.
func Main(env *cli.Env, prog string, args []string) int {
	return env.Fatalf(prog, "not implemented yet")
}
