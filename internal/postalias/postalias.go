// Package postalias implements the postalias command.
package postalias

import "moat/internal/cli"

// Main runs postalias with args (without the program name) and returns the exit status.
func Main(env *cli.Env, prog string, args []string) int {
	return env.Fatalf(prog, "not implemented yet")
}
