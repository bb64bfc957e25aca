// Package config reads main.cf as Postfix does (postconf(5)) and is the one
// place moat's code reads parameters from: names, Postfix's defaults (with
// moat's safer ones, see SaferDefaults), types, validation, lazy recursive
// $name expansion, and per-service master.cf overrides.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is a parsed main.cf with moat's parameter table behind it. A
// Config is not safe for concurrent mutation; read-only use is fine.
type Config struct {
	// Dir is the configuration directory; Path is Dir/main.cf.
	Dir, Path string
	// ProcessName is the process_name parameter (the running command).
	ProcessName string

	table     *Table
	entries   map[string]Entry
	order     []Entry // every definition, in file order
	overrides map[string]string
	// program holds values the running program sets, as Postfix's
	// commands do for config_directory under -c.
	program map[string]string
	// service holds parameters master.cf implies for delivery transports
	// (postconf(5): "transport_destination_concurrency_limit" etc.).
	service  map[string]string
	warnings []string
}

// Load reads DIR/main.cf and checks it: syntax, obsolete parameters and
// restrictions, and every value against its type. Any problem is returned
// as an error so daemons fail closed; Warnings has the rest.
func Load(dir string) (*Config, error) {
	c, err := Open(dir)
	if err != nil {
		return nil, err
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	return c, nil
}

// Open reads DIR/main.cf without semantic checks, for postconf, which must
// show a configuration even when it has errors.
func Open(dir string) (*Config, error) {
	c := Empty(dir)
	// config_directory is the directory the program was started with
	// (-c, MAIL_CONFIG), as in Postfix: the queue manager finds master.cf
	// there, and main.cf may name files relative to it.
	if abs, err := filepath.Abs(dir); err == nil {
		c.SetProgramValue("config_directory", abs)
	}
	entries, warnings, err := ParseFile(c.Path)
	c.warnings = warnings
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if p, ok := c.table.Lookup(e.Name); ok && p.ReadOnly {
			c.warnings = append(c.warnings, fmt.Sprintf("%s: read-only parameter assignment: %s=%s", c.Path, e.Name, e.Value))
			continue
		}
		if old, ok := c.entries[e.Name]; ok {
			c.warnings = append(c.warnings, fmt.Sprintf("%s, line %d: overriding earlier entry: %s=%s", c.Path, e.Line, old.Name, old.Value))
		}
		c.entries[e.Name] = e
		c.order = append(c.order, e)
	}
	return c, nil
}

// Empty returns a Config with no main.cf settings: only defaults, as
// `postconf -d` shows them.
func Empty(dir string) *Config {
	return &Config{
		Dir:         dir,
		Path:        filepath.Join(dir, "main.cf"),
		ProcessName: filepath.Base(os.Args[0]),
		table:       NewTable(),
		entries:     map[string]Entry{},
		program:     map[string]string{},
		service:     map[string]string{},
	}
}

// Table returns the parameter table behind c.
func (c *Config) Table() *Table { return c.table }

// SetProgramValue sets name as if main.cf did, unless main.cf does; Postfix
// commands do this for config_directory when run with -c DIR.
func (c *Config) SetProgramValue(name, value string) { c.program[name] = value }

// Entry returns main.cf's definition of name (the last one).
func (c *Config) Entry(name string) (Entry, bool) {
	e, ok := c.entries[name]
	return e, ok
}

// Entries returns main.cf's effective definitions sorted by name.
func (c *Config) Entries() []Entry {
	var out []Entry
	for _, e := range c.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WithOverrides returns a view of c in which master.cf "-o name=value"
// settings win over main.cf and defaults (master(5)); c is unchanged.
func (c *Config) WithOverrides(overrides map[string]string) *Config {
	v := *c
	v.overrides = make(map[string]string, len(c.overrides)+len(overrides))
	for k, x := range c.overrides {
		v.overrides[k] = x
	}
	for k, x := range overrides {
		v.overrides[k] = x
	}
	return &v
}

// AddServiceParams declares the parameters Postfix derives from a master.cf
// service that runs a delivery agent (postconf(5): the "transport_" forms of
// destination_concurrency_limit and friends). command is master.cf's command
// name (smtp, lmtp, local, virtual, error, pipe).
func (c *Config) AddServiceParams(service, command string) {
	switch command {
	case "smtp", "lmtp", "local", "virtual", "error", "pipe":
	default:
		return
	}
	for _, p := range [][2]string{
		{"delivery_slot_cost", "$default_delivery_slot_cost"},
		{"delivery_slot_discount", "$default_delivery_slot_discount"},
		{"delivery_slot_loan", "$default_delivery_slot_loan"},
		{"destination_concurrency_failed_cohort_limit", "$default_destination_concurrency_failed_cohort_limit"},
		{"destination_concurrency_limit", "$default_destination_concurrency_limit"},
		{"destination_concurrency_negative_feedback", "$default_destination_concurrency_negative_feedback"},
		{"destination_concurrency_positive_feedback", "$default_destination_concurrency_positive_feedback"},
		{"destination_rate_delay", "$default_destination_rate_delay"},
		{"destination_recipient_limit", "$default_destination_recipient_limit"},
		{"extra_recipient_limit", "$default_extra_recipient_limit"},
		{"initial_destination_concurrency", "$initial_destination_concurrency"},
		{"minimum_delivery_slots", "$default_minimum_delivery_slots"},
		{"recipient_limit", "$default_recipient_limit"},
		{"recipient_refill_delay", "$default_recipient_refill_delay"},
		{"recipient_refill_limit", "$default_recipient_refill_limit"},
		{"transport_rate_delay", "$default_transport_rate_delay"},
	} {
		c.addService(service+"_"+p[0], p[1])
	}
	if command == "pipe" {
		c.addService(service+"_time_limit", "$command_time_limit")
	}
}

func (c *Config) addService(name, def string) {
	if _, ok := c.table.Lookup(name); !ok {
		c.service[name] = def
	}
}

// IsBuiltin reports whether name is a parameter moat knows (including
// those a master.cf service implies).
func (c *Config) IsBuiltin(name string) bool {
	if _, ok := c.table.Lookup(name); ok {
		return true
	}
	_, ok := c.service[name]
	return ok
}

// BuiltinNames returns the known parameter names, sorted.
func (c *Config) BuiltinNames() []string {
	names := append([]string(nil), c.table.Names()...)
	for n := range c.service {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Default returns name's default (moat's, computed on this host when
// Postfix computes it) and whether name is known.
func (c *Config) Default(name string) (string, bool) {
	p, ok := c.table.Lookup(name)
	if !ok {
		d, ok := c.service[name]
		return d, ok
	}
	if !p.Computed {
		return p.Default, true
	}
	switch name {
	case "myhostname":
		return hostName(), true
	case "mydomain":
		return domainOf(c.Get("myhostname")), true
	case "mynetworks":
		ifaces := strings.ToLower(strings.Join(SplitList(c.Get("inet_interfaces")), " "))
		loop := ifaces == "loopback-only" || ifaces == "localhost" || ifaces == "127.0.0.1" || ifaces == "127.0.0.1 [::1]"
		return localNetworks(c.Get("mynetworks_style"), c.Get("inet_protocols"), loop), true
	case "process_id":
		return strconv.Itoa(os.Getpid()), true
	case "process_name":
		return c.ProcessName, true
	}
	return p.Default, true
}

// Raw returns name's unexpanded value: a master.cf override, else main.cf,
// else the default. ok is false for a name with no value anywhere.
func (c *Config) Raw(name string) (string, bool) {
	if v, ok := c.overrides[name]; ok {
		return v, true
	}
	if e, ok := c.entries[name]; ok {
		return e.Value, true
	}
	if v, ok := c.program[name]; ok {
		return v, true
	}
	return c.Default(name)
}

// Expand expands $name references in s against c, recursively, reporting
// syntax errors and runaway recursion (postconf(5), "$name" expressions).
func (c *Config) Expand(s string) (string, error) {
	var msgs []string
	e := &Expander{Lookup: c.Raw, Recurse: true, Warn: func(m string) { msgs = append(msgs, m) }}
	v, st := e.Expand(s)
	if st&StatError != 0 {
		return v, errors.New(strings.Join(msgs, "; "))
	}
	return v, nil
}

// IsRaw reports whether name is a parameter Postfix never expands when
// reading main.cf (its value holds run-time macros; see Param.Raw).
func (c *Config) IsRaw(name string) bool {
	p, ok := c.table.Lookup(name)
	return ok && p.Raw
}

// GetErr returns the expanded value of name; a raw parameter's value is
// returned as is.
func (c *Config) GetErr(name string) (string, error) {
	raw, _ := c.Raw(name)
	if c.IsRaw(name) {
		return raw, nil
	}
	v, err := c.Expand(raw)
	if err != nil {
		return "", fmt.Errorf("parameter %s: %w", name, err)
	}
	return v, nil
}

// Get returns the expanded value of a parameter: main.cf's, else the
// default; "" when expansion fails (Load has already reported that).
func (c *Config) Get(name string) string {
	v, _ := c.GetErr(name)
	return v
}

// Bool returns a boolean parameter.
func (c *Config) Bool(name string) (bool, error) {
	v, err := c.GetErr(name)
	if err != nil {
		return false, err
	}
	b, err := ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("parameter %s: bad value %q: %w", name, v, err)
	}
	return b, nil
}

// Int returns an integer parameter (int and long types alike).
func (c *Config) Int(name string) (int64, error) {
	v, err := c.GetErr(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parameter %s: bad value %q: expected an integer", name, v)
	}
	return n, nil
}

// Size returns a byte-count parameter such as message_size_limit.
func (c *Config) Size(name string) (int64, error) { return c.Int(name) }

// Duration returns a time parameter, applying its default unit.
func (c *Config) Duration(name string) (time.Duration, error) {
	v, err := c.GetErr(name)
	if err != nil {
		return 0, err
	}
	unit := byte('s')
	if p, ok := c.table.Lookup(name); ok && p.Unit != 0 {
		unit = p.Unit
	}
	d, err := ParseDuration(v, unit)
	if err != nil {
		return 0, fmt.Errorf("parameter %s: bad value %q: %w", name, v, err)
	}
	return d, nil
}

// List returns a list parameter split on commas and whitespace with { }
// grouping, as Postfix splits lists.
func (c *Config) List(name string) ([]string, error) {
	v, err := c.GetErr(name)
	if err != nil {
		return nil, err
	}
	return SplitList(v), nil
}

// Warnings returns non-fatal diagnostics in Postfix's words, with the file
// name and no program prefix: skipped lines, repeated definitions and
// unused parameters.
func (c *Config) Warnings() []string {
	out := append([]string(nil), c.warnings...)
	out = append(out, c.Undefined()...)
	for _, e := range c.Unused(nil) {
		out = append(out, fmt.Sprintf("%s: unused parameter: %s=%s", c.Path, e.Name, e.Value))
	}
	return out
}
