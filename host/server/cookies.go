package server

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// cookieJar sets and clears the provider's cookies with the names, paths and
// attributes Backstage's OAuthCookieManager uses, so a Backstage app cannot
// tell the two apart.
type cookieJar struct {
	nonceName, refreshName, scopeName string
	path                              string // e.g. /api/auth/spectrocloud
	callbackHost                      string
	secure                            bool
	defaultAppOrigin                  string
	maxAge                            time.Duration
}

const nonceMaxAge = 10 * time.Minute

func newCookieJar(providerID, callbackURL, defaultAppOrigin string, sessionDuration time.Duration) (*cookieJar, error) {
	u, err := url.Parse(callbackURL)
	if err != nil {
		return nil, err
	}
	path := u.Path + "/" + providerID
	if suffix := providerID + "/handler/frame"; strings.HasSuffix(u.Path, suffix) {
		path = strings.TrimSuffix(u.Path, "/handler/frame")
	}
	return &cookieJar{
		nonceName:        providerID + "-nonce",
		refreshName:      providerID + "-refresh-token",
		scopeName:        providerID + "-granted-scope",
		path:             path,
		callbackHost:     u.Hostname(),
		secure:           u.Scheme == "https",
		defaultAppOrigin: defaultAppOrigin,
		maxAge:           sessionDuration,
	}, nil
}

// sameSite is Lax, or None when the app lives on another host than the
// callback and the cookie is Secure (a cross-site app must send it).
func (j *cookieJar) sameSite(appOrigin string) http.SameSite {
	if appOrigin == "" {
		appOrigin = j.defaultAppOrigin
	}
	if u, err := url.Parse(appOrigin); err == nil && u.Hostname() != j.callbackHost && j.secure {
		return http.SameSiteNoneMode
	}
	return http.SameSiteLaxMode
}

func (j *cookieJar) set(w http.ResponseWriter, name, value, pathSuffix string, maxAge time.Duration, appOrigin string) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     j.path + pathSuffix,
		HttpOnly: true,
		Secure:   j.secure,
		SameSite: j.sameSite(appOrigin),
	}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = time.Now().Add(maxAge).UTC()
	} else {
		c.MaxAge = -1 // Max-Age=0 on the wire
		c.Expires = time.Unix(0, 0)
	}
	http.SetCookie(w, c)
}

func (j *cookieJar) setNonce(w http.ResponseWriter, nonce, appOrigin string) {
	j.set(w, j.nonceName, nonce, "/handler", nonceMaxAge, appOrigin)
}

func (j *cookieJar) clearNonce(w http.ResponseWriter, appOrigin string) {
	j.set(w, j.nonceName, "", "/handler", 0, appOrigin)
}

func (j *cookieJar) setSession(w http.ResponseWriter, handle, scope, appOrigin string) {
	j.set(w, j.refreshName, handle, "", j.maxAge, appOrigin)
	// Encoded the way express encodes cookie values, so a space stays a %20.
	j.set(w, j.scopeName, url.PathEscape(scope), "", j.maxAge, appOrigin)
}

func (j *cookieJar) clearSession(w http.ResponseWriter, appOrigin string) {
	j.set(w, j.refreshName, "", "", 0, appOrigin)
	j.set(w, j.scopeName, "", "", 0, appOrigin)
}

func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}
