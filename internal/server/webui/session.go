package webui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Cookie names. Both are HttpOnly, Secure, SameSite=Strict and scoped to
// /ui/, so no script and no other site's request ever carries them.
const (
	// sessionCookie holds the access token of the signed-in user.
	sessionCookie = "corral_session"
	// signInCookie holds the random nonce that the sign-in form echoes
	// (CSRF protection before there is a session).
	signInCookie = "corral_signin"
	cookiePath   = "/ui/"
	csrfField    = "csrf"
)

// errCrossSite is returned for a POST that did not come from our own pages.
var errCrossSite = errors.New("the form was not submitted from this site, or its security token is stale: reload the page and try again")

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: cookiePath, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge.Seconds())
	} else {
		c.MaxAge = -1 // delete
	}
	http.SetCookie(w, c)
}

// sessionToken is the access token in the session cookie, "" when signed out.
func sessionToken(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// sessionCSRF is the CSRF token of a session: an HMAC of a fixed label keyed
// by the session's access token. It changes with every sign-in, needs no
// server-side state (any replica can check it), and reveals nothing about
// the token it is derived from.
func sessionCSRF(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("corral-webui-csrf-v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newNonce returns 256 random bits as URL-safe text.
func newNonce() string { return rand.Text() + rand.Text() }

// tokenMatches compares a submitted CSRF token with the expected one in
// constant time; an empty expected value never matches.
func tokenMatches(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// checkSameOrigin refuses a state-changing request that a browser tells us
// came from elsewhere: Sec-Fetch-Site other than same-origin (or none, a
// user-typed navigation), or an Origin / Referer naming another origin.
// Requests without these headers (old browsers, scripts) rely on the token.
func checkSameOrigin(r *http.Request) error {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return errCrossSite
	}
	self := "https://" + r.Host
	if origin := r.Header.Get("Origin"); origin != "" {
		if origin != self {
			return errCrossSite
		}
		return nil
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || u.Scheme+"://"+u.Host != self {
			return errCrossSite
		}
	}
	return nil
}

// safeNext returns next if it is a path inside the UI (no scheme, no host,
// no protocol-relative "//"), or the inventory page.
func safeNext(next string) string {
	if !strings.HasPrefix(next, cookiePath) || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "/ui/static/") || strings.HasPrefix(next, "/ui/sign") {
		return "/ui/machines"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/ui/machines"
	}
	return next
}
