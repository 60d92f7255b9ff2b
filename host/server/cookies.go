package server

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"golang.org/x/net/publicsuffix"
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
	// hostPrefixed: the names start with __Host- and every path is /
	// (Config.HostPrefixedCookies).
	hostPrefixed bool
}

// hostCookiePrefix makes a cookie host-only, Secure and Path=/ by the
// browser's own rule: no other host (a sibling subdomain) can set one.
const hostCookiePrefix = "__Host-"

const nonceMaxAge = lifecycle.FlowLifetime

func newCookieJar(providerID, callbackURL, defaultAppOrigin string, sessionDuration time.Duration, hostPrefixed bool) (*cookieJar, error) {
	u, err := url.Parse(callbackURL)
	if err != nil {
		return nil, err
	}
	if hostPrefixed {
		if u.Scheme != "https" {
			return nil, errors.New("__Host- cookie names need an https callback URL")
		}
		return &cookieJar{
			nonceName:        hostCookiePrefix + providerID + "-nonce",
			refreshName:      hostCookiePrefix + providerID + "-refresh-token",
			scopeName:        hostCookiePrefix + providerID + "-granted-scope",
			path:             "",
			callbackHost:     u.Hostname(),
			secure:           true,
			defaultAppOrigin: defaultAppOrigin,
			maxAge:           sessionDuration,
			hostPrefixed:     true,
		}, nil
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
	path := j.path + pathSuffix
	if j.hostPrefixed {
		path = "/"
	}
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
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

// sessionHandles returns the values of every refresh cookie the request
// carries, in order, and whether any session cookie name (the refresh or
// the granted-scope cookie) is repeated. A repeated name means another
// site (a sibling subdomain, or a more specific path) planted one: the
// browser sends both and nothing says which is ours.
func (j *cookieJar) sessionHandles(r *http.Request) (handles []string, duplicate bool) {
	scopes := 0
	for _, c := range r.Cookies() {
		switch c.Name {
		case j.refreshName:
			handles = append(handles, c.Value)
		case j.scopeName:
			scopes++
		}
	}
	return handles, len(handles) > 1 || scopes > 1
}

// clearPlanted clears the session cookies everywhere a planted copy may
// live that the daemon can name: host-only and on each parent domain up
// to the registrable one, on the provider's path, its routes' paths and
// the root. A copy on a path or domain outside these stays; the request
// is refused as long as the browser sends it.
func (j *cookieJar) clearPlanted(w http.ResponseWriter, appOrigin string) {
	if j.hostPrefixed {
		// Only this host can set a __Host- cookie, always on /.
		j.clearSession(w, appOrigin)
		return
	}
	domains := []string{""}
	if net.ParseIP(j.callbackHost) == nil {
		if top, err := publicsuffix.EffectiveTLDPlusOne(j.callbackHost); err == nil {
			domains = append(domains, j.callbackHost)
			for d := j.callbackHost; ; {
				_, parent, ok := strings.Cut(d, ".")
				if !ok || len(parent) < len(top) {
					break
				}
				domains = append(domains, parent)
				d = parent
			}
		}
	}
	for _, path := range []string{j.path, j.path + "/refresh", j.path + "/logout", "/"} {
		for _, d := range domains {
			for _, name := range []string{j.refreshName, j.scopeName} {
				http.SetCookie(w, &http.Cookie{
					Name: name, Path: path, Domain: d, MaxAge: -1, Expires: time.Unix(0, 0),
					HttpOnly: true, Secure: j.secure, SameSite: j.sameSite(appOrigin),
				})
			}
		}
	}
}
