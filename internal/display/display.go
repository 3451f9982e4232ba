// Package display writes model-supplied names in messages and tables so
// that they cannot forge lines, cells or terminal escapes.
package display

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Name returns s as it is when it is plain printable text, else quoted
// (Go syntax; ASCII escapes for invalid UTF-8); "" is written as "".
func Name(s string) string {
	if s == "" {
		return `""`
	}
	if !utf8.ValidString(s) {
		return strconv.QuoteToASCII(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == ' ' || r == '|' || r == '"' || r == '\\' || r == '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}
