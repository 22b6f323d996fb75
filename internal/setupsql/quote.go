package setupsql

import "strings"

// dollarQuote wraps body in a dollar-quoted string whose tag does not occur
// in body.
func dollarQuote(body string) string {
	tag := "$pgsignal$"
	for i := 1; strings.Contains(body, tag); i++ {
		tag = "$pgsignal" + strings.Repeat("_", i) + "$"
	}
	return tag + "\n" + body + tag
}
