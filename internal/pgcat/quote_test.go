package pgcat

import "testing"

func TestQuoteReplLiteral(t *testing.T) {
	tests := []struct{ in, want string }{
		{"pgsignal", `'pgsignal'`},
		{"", `''`},
		{"it's", `'it''s'`},
		{"''", `''''''`},
		{`a"b`, `'a"b'`},
	}
	for _, tt := range tests {
		if got := QuoteReplLiteral(tt.in); got != tt.want {
			t.Errorf("QuoteReplLiteral(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"events", `"events"`},
		{"", `""`},
		{"Mixed Case", `"Mixed Case"`},
		{"odd; name", `"odd; name"`},
		{`a"b`, `"a""b"`},
		{`"`, `""""`},
		{`""`, `""""""`},
		{`x"; DROP TABLE t; --`, `"x""; DROP TABLE t; --"`},
		{"naïve", `"naïve"`},
	}
	for _, tt := range tests {
		if got := QuoteIdent(tt.in); got != tt.want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
