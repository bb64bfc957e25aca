package config

//go:generate go run ./gen -o params_table.go

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Type is how a parameter's value is read (postconf(5) describes each
// parameter's value as one of these shapes).
type Type int

// Parameter types. Lists are split on commas and whitespace; map lists hold
// type:name tables; restriction lists hold smtpd restrictions.
const (
	TypeString Type = iota
	TypeBool
	TypeInt
	TypeLong
	TypeTime
	TypeList
	TypeMapList
	TypeRestrictions
)

// String names a Type in validation messages.
func (t Type) String() string {
	switch t {
	case TypeBool:
		return "bool"
	case TypeInt:
		return "int"
	case TypeLong:
		return "long"
	case TypeTime:
		return "time"
	case TypeList:
		return "list"
	case TypeMapList:
		return "map list"
	case TypeRestrictions:
		return "restriction list"
	}
	return "string"
}

// Param is one row of moat's parameter table: Postfix's name and raw
// default (as `postconf -d` prints it), type, and validation.
type Param struct {
	Name    string
	Default string
	Type    Type
	Unit    byte     // default time unit for TypeTime (s, m, h, d, w)
	Min     int64    // lower bound for numbers, when non-zero
	Enum    []string // allowed values for a string, when set
	// Computed defaults depend on the host (hostname, interfaces, pid);
	// Default holds the generating machine's value for reference only.
	Computed bool
	// Raw parameters hold run-time macros ($rbl_code, $home) and are
	// never expanded from main.cf (postconf -x prints them as is).
	Raw bool
	// ReadOnly parameters describe the running process; main.cf cannot
	// set them.
	ReadOnly bool
	// Moat marks a parameter Postfix does not have (MoatParams).
	Moat bool
}

// Table is the set of parameters moat knows, indexed by name.
type Table struct {
	byName map[string]*Param
	names  []string
}

// NewTable builds the table from the generated Postfix rows with moat's
// safer defaults applied (see SaferDefaults).
func NewTable() *Table {
	rows := append(builtinParams(), MoatParams()...)
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	t := &Table{byName: make(map[string]*Param, len(rows))}
	for i := range rows {
		t.byName[rows[i].Name] = &rows[i]
		t.names = append(t.names, rows[i].Name)
	}
	for _, d := range SaferDefaults() {
		if p, ok := t.byName[d.Name]; ok {
			p.Default = d.Value
			p.Computed = false
		}
	}
	return t
}

// Lookup returns the parameter named name.
func (t *Table) Lookup(name string) (*Param, bool) {
	p, ok := t.byName[name]
	return p, ok
}

// Names returns every parameter name, sorted.
func (t *Table) Names() []string { return t.names }

// Validate checks an expanded value against the parameter's type, in the
// words used for main.cf errors ("expected ...").
func (p *Param) Validate(v string) error {
	switch p.Type {
	case TypeBool:
		if _, err := ParseBool(v); err != nil {
			return err
		}
	case TypeInt, TypeLong:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || p.Type == TypeInt && (n > 1<<31-1 || n < -1<<31) {
			return fmt.Errorf("expected an integer")
		}
		if n < p.Min {
			return fmt.Errorf("expected an integer >= %d", p.Min)
		}
	case TypeTime:
		if _, err := ParseDuration(v, p.Unit); err != nil {
			return err
		}
	}
	if p.Name == "compatibility_level" {
		// postconf(5) compatibility_level: "major[.minor[.patch]]".
		if _, ok := parseLevel(strings.TrimSpace(v)); !ok {
			return fmt.Errorf("expected a compatibility level such as 2 or 3.6")
		}
	}
	if p.Enum != nil {
		for _, e := range p.Enum {
			if strings.EqualFold(e, strings.TrimSpace(v)) {
				return nil
			}
		}
		return fmt.Errorf("expected one of %s", strings.Join(quoteAll(p.Enum), ", "))
	}
	return nil
}

func quoteAll(l []string) []string {
	var out []string
	for _, s := range l {
		out = append(out, strconv.Quote(s))
	}
	return out
}
