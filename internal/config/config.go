// Package config reads main.cf. (Placeholder API; the real package replaces it.)
package config

import "errors"

// Config is a parsed main.cf with Postfix's defaults behind it.
type Config struct{}

// Load reads DIR/main.cf.
func Load(dir string) (*Config, error) { return nil, errors.New("config: not implemented yet") }

// Get returns the expanded value of a parameter: main.cf's, else the default.
func (c *Config) Get(name string) string { return "" }
