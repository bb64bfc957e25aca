package getopt

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args     []string
		spec     string
		opts     []Option
		operands []string
		err      string
	}{
		{[]string{"-nf"}, "c:nf", []Option{{Flag: 'n'}, {Flag: 'f'}}, []string{}, ""},
		{[]string{"-c", "/etc/postfix", "-n"}, "c:nf", []Option{{'c', "/etc/postfix"}, {Flag: 'n'}}, []string{}, ""},
		{[]string{"-c/x", "myhostname"}, "c:n", []Option{{'c', "/x"}}, []string{"myhostname"}, ""},
		{[]string{"-q", "KEY", "hash:/t"}, "q:", []Option{{'q', "KEY"}}, []string{"hash:/t"}, ""},
		{[]string{"hash:/t", "-q", "k"}, "q:", nil, []string{"hash:/t", "-q", "k"}, ""},
		{[]string{"-n", "--", "-x"}, "nx", []Option{{Flag: 'n'}}, []string{"-x"}, ""},
		{[]string{"-z"}, "n", nil, nil, "invalid option -- 'z'"},
		{[]string{"-q"}, "q:", nil, nil, "option requires an argument -- 'q'"},
		{[]string{"-"}, "n", nil, []string{"-"}, ""},
	}
	for _, tc := range tests {
		opts, ops, err := Parse(tc.args, tc.spec)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Parse(%q): err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(opts, tc.opts) || !reflect.DeepEqual(ops, tc.operands) {
			t.Errorf("Parse(%q) = %v %q, want %v %q", tc.args, opts, ops, tc.opts, tc.operands)
		}
	}
}
