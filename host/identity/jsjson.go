package identity

import (
	"encoding/base64"
	"strconv"
)

// The limited-user token that Backstage verifiers rebuild from uip is
// base64url(JSON.stringify(header)) + "." + base64url(JSON.stringify(payload)).
// encoding/json differs from JSON.stringify (it escapes <, >, &, U+2028 and
// U+2029, and sorts map keys), so the bytes that get signed are built by hand
// with the helpers below, which follow ECMAScript's JSON.stringify
// (QuoteJSONString) for well-formed strings.

const hexDigits = "0123456789abcdef"

// appendJSString appends s as JSON.stringify would quote it. s must be valid
// UTF-8 (callers check with utf8.ValidString): JavaScript strings cannot hold
// invalid UTF-8, so there is nothing to be compatible with.
func appendJSString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue // multi-byte UTF-8 sequences are copied verbatim
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSStringArray appends a JSON array of strings, JSON.stringify style.
func appendJSStringArray(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSString(b, s)
	}
	return append(b, ']')
}

// appendInt appends a JSON integer (epoch seconds).
func appendInt(b []byte, n int64) []byte {
	return strconv.AppendInt(b, n, 10)
}

// appendB64 appends the unpadded base64url encoding of src.
func appendB64(b, src []byte) []byte {
	return base64.RawURLEncoding.AppendEncode(b, src)
}

// limitedHeaderJSON is JSON.stringify({typ, alg, kid}) for the limited token.
func limitedHeaderJSON(kid string) []byte {
	return headerJSON(TypeLimitedUser, kid)
}

// headerJSON is JSON.stringify({typ, alg, kid}): the order Backstage uses for
// both token headers.
func headerJSON(typ, kid string) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"typ":`...)
	b = appendJSString(b, typ)
	b = append(b, `,"alg":"ES256","kid":`...)
	b = appendJSString(b, kid)
	return append(b, '}')
}

// limitedPayloadJSON is JSON.stringify({sub, iat, exp}).
func appendLimitedPayloadJSON(b []byte, sub string, iat, exp int64) []byte {
	b = append(b, `{"sub":`...)
	b = appendJSString(b, sub)
	b = append(b, `,"iat":`...)
	b = appendInt(b, iat)
	b = append(b, `,"exp":`...)
	b = appendInt(b, exp)
	return append(b, '}')
}
