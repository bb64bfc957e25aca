package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Used returns the names postconf counts as used, as Postfix's postconf
// does: every built-in parameter, every name referenced as $name in a
// main.cf value (in any branch of a conditional), every name listed in
// smtpd_restriction_classes, and the extra names the caller adds (master.cf
// "-o" names and the names their values reference).
func (c *Config) Used(extra []string) map[string]bool {
	used := map[string]bool{}
	for _, n := range c.table.Names() {
		used[n] = true
	}
	for n := range c.service {
		used[n] = true
	}
	for n := range c.program {
		used[n] = true
	}
	// Values in effect count, defaults included: virtual_alias_maps
	// defaults to $virtual_maps, so a main.cf virtual_maps is used.
	for _, n := range c.BuiltinNames() {
		if c.IsRaw(n) {
			continue
		}
		if v, ok := c.Raw(n); ok && strings.Contains(v, "$") {
			References(v, func(n string) { used[n] = true })
		}
	}
	for _, e := range c.entries {
		if !c.IsRaw(e.Name) {
			References(e.Value, func(n string) { used[n] = true })
		}
	}
	for _, n := range SplitList(c.Get("smtpd_restriction_classes")) {
		used[n] = true
	}
	for _, n := range extra {
		used[n] = true
	}
	return used
}

// Undefined warns, as Postfix's postconf does, about each name a main.cf
// value refers to that is neither a known parameter nor defined in main.cf
// (it expands to nothing, which is usually a typo).
func (c *Config) Undefined() []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range c.order {
		if c.IsRaw(e.Name) {
			continue
		}
		References(e.Value, func(n string) {
			if seen[n] || c.IsBuiltin(n) {
				return
			}
			if _, ok := c.entries[n]; ok {
				return
			}
			if _, ok := c.program[n]; ok {
				return
			}
			seen[n] = true
			out = append(out, fmt.Sprintf("%s: undefined parameter: %s", c.Path, n))
		})
	}
	return out
}

// Unused returns main.cf's definitions that nothing uses (see Used), in file
// order; Postfix's postconf warns "unused parameter" for each.
func (c *Config) Unused(extra []string) []Entry {
	used := c.Used(extra)
	var out []Entry
	for _, e := range c.order {
		if last := c.entries[e.Name]; last.Line != e.Line || used[e.Name] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// Check reports every configuration error in main.cf: obsolete parameters
// (each naming its replacement), values that do not expand,
// and values of the wrong type or out of range. Each line reads
// "/path/main.cf, line N: ...".
func (c *Config) Check() error {
	var errs []error
	obsolete := map[string]string{}
	for _, o := range ObsoleteParams() {
		obsolete[o.Name] = o.Replacement
	}
	entries := c.Entries()
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Line < entries[j].Line })
	for _, e := range entries {
		where := fmt.Sprintf("%s, line %d", c.Path, e.Line)
		if r, ok := obsolete[e.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: parameter %s is obsolete: use %s", where, e.Name, r))
			continue
		}
		p, known := c.table.Lookup(e.Name)
		if known && p.Raw {
			continue
		}
		v, err := c.Expand(e.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: parameter %s: bad value %q: %v", where, e.Name, e.Value, err))
			continue
		}
		if !known {
			continue
		}
		if err := p.Validate(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: parameter %s: bad value %q: %v", where, e.Name, v, err))
		}
	}
	return errors.Join(errs...)
}

// CheckOverride validates one master.cf "-o name=value" setting the way
// Check validates main.cf (obsolete names, expansion and
// type), so a service whose override is wrong fails closed; the caller
// prefixes the master.cf file and line.
func (c *Config) CheckOverride(name, value string) error {
	for _, o := range ObsoleteParams() {
		if o.Name == name {
			return fmt.Errorf("parameter %s is obsolete: use %s", name, o.Replacement)
		}
	}
	p, known := c.table.Lookup(name)
	if !known || p.Raw {
		return nil
	}
	v, err := c.WithOverrides(map[string]string{name: value}).Expand(value)
	if err != nil {
		return fmt.Errorf("parameter %s: bad value %q: %v", name, value, err)
	}
	if err := p.Validate(v); err != nil {
		return fmt.Errorf("parameter %s: bad value %q: %v", name, v, err)
	}
	return nil
}
