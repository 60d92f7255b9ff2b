// Package cliwire holds what the daemon's command-line sign-in routes and
// the command-line program (host/kube/kubecli) must agree on.
package cliwire

import (
	"crypto/sha256"
	"errors"
	"html"
	"net/url"
	"regexp"
	"sync"
)

// CallbackPath is the path of the program's loopback redirect URI; the
// daemon accepts no other.
const CallbackPath = "/callback"

// codeAlphabet has no vowels, 0, 1, O or I: nothing to misread, no words.
const codeAlphabet = "BCDFGHJKLMNPQRSTVWXZ23456789"

// ConfirmationCode is the short code the program prints and the daemon's
// consent page shows, so the user can tell the sign-in they started from one
// someone else started: derived from the PKCE challenge, which both know.
// It is "XXXX-XXXX" over a 28-letter alphabet.
func ConfirmationCode(challenge string) string {
	sum := sha256.Sum256([]byte("spectroauth confirmation code\x00" + challenge))
	out := make([]byte, 0, 9)
	for i := range 8 {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, codeAlphabet[int(sum[i])%len(codeAlphabet)])
	}
	return string(out)
}

// DeviceAuthorization is the answer of the daemon's device authorization
// endpoint (RFC 8628 section 3.2).
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// ConsentForm is the form of the daemon's consent page.
type ConsentForm struct {
	// Action is the form's action (a path on the daemon).
	Action string
	// Fields are the hidden fields to post back.
	Fields url.Values
	// Code is the confirmation code the page shows.
	Code string
}

// consentPatterns read the consent page; compiled on first use, as only
// the command-line client reads that page, never the daemon's start.
var consentPatterns = sync.OnceValue(func() (p struct{ formAction, hiddenField, shownCode *regexp.Regexp }) {
	p.formAction = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	p.hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)
	p.shownCode = regexp.MustCompile(`<strong id="code">([^<]+)</strong>`)
	return p
})

// ParseConsentPage reads the consent page's form, for programs that drive
// a sign-in without a person (tests, headless end-to-end runs).
func ParseConsentPage(page []byte) (ConsentForm, error) {
	re := consentPatterns()
	a := re.formAction.FindSubmatch(page)
	c := re.shownCode.FindSubmatch(page)
	if a == nil || c == nil {
		return ConsentForm{}, errors.New("not the daemon's consent page")
	}
	f := ConsentForm{Action: html.UnescapeString(string(a[1])), Fields: url.Values{}, Code: html.UnescapeString(string(c[1]))}
	for _, m := range re.hiddenField.FindAllSubmatch(page, -1) {
		f.Fields.Set(string(m[1]), html.UnescapeString(string(m[2])))
	}
	return f, nil
}
