package webui

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// signInData is the sign-in form.
type signInData struct {
	Username string
	Next     string
}

func (h *Handler) signInPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := &page{Title: "Sign in", Data: signInData{Next: safeNext(q.Get("next"))}}
	switch q.Get("reason") {
	case "expired":
		p.Notice = "Your session has expired or is no longer valid. Sign in again."
	case "signedout":
		p.Notice = "You have signed out."
	case "passwordchanged":
		p.Notice = "Your password was changed and your sessions ended. Sign in with the new password."
	}
	p.CSRF = h.signInNonce(w, r)
	h.render(w, r, http.StatusOK, "signin", p)
}

// signInNonce returns the nonce of the sign-in form, reusing the browser's
// so that two open sign-in tabs both work.
func (h *Handler) signInNonce(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(signInCookie); err == nil && len(c.Value) >= 32 && len(c.Value) <= 128 {
		return c.Value
	}
	n := newNonce()
	setCookie(w, signInCookie, n, time.Hour)
	return n
}

// signIn exchanges user name and password for an access token through the
// API's OAuth2 password grant (so throttling and the activity log apply),
// then keeps the token in the session cookie.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	nonce := ""
	if c, err := r.Cookie(signInCookie); err == nil {
		nonce = c.Value
	}
	if err := h.checkPost(r, nonce); err != nil {
		h.refusePost(w, r, err)
		return
	}
	d := signInData{Username: strings.TrimSpace(r.PostForm.Get("username")), Next: safeNext(r.PostForm.Get("next"))}
	password := r.PostForm.Get("password")
	fail := func(status int, code, msg string) {
		h.render(w, r, status, "signin", &page{Title: "Sign in", CSRF: nonce, Data: d,
			Error: &uiError{Status: status, Code: code, Message: msg}})
	}
	if d.Username == "" || password == "" {
		fail(http.StatusBadRequest, wire.CodeValidation, "Enter your user name and password.")
		return
	}
	tr, err := h.apiFor(r, "").PasswordToken(r.Context(), d.Username, password)
	var ae *wire.APIError
	switch {
	case errors.As(err, &ae):
		fail(ae.Status, ae.Code, "Sign-in failed: "+ae.Message+".")
		return
	case err != nil:
		ue := h.toUIError(r, err)
		fail(ue.Status, ue.Code, ue.Message)
		return
	case tr.AccessToken == "":
		fail(http.StatusBadGateway, wire.CodeInternal, "Sign-in failed: the token endpoint returned no token.")
		return
	}
	// The cookie lives as long as the token (at least a minute, so a
	// malformed expires_in cannot delete it at once).
	setCookie(w, sessionCookie, tr.AccessToken, time.Duration(max(tr.ExpiresIn, 60))*time.Second)
	setCookie(w, signInCookie, "", 0)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// signOut forgets the session. Access tokens are short-lived JWTs: the
// cookie is the only copy the UI ever had.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	tok := sessionToken(r)
	if tok == "" {
		http.Redirect(w, r, "/ui/signin?reason=signedout", http.StatusSeeOther)
		return
	}
	if err := h.checkPost(r, sessionCSRF(tok)); err != nil {
		h.refusePost(w, r, err)
		return
	}
	setCookie(w, sessionCookie, "", 0)
	http.Redirect(w, r, "/ui/signin?reason=signedout", http.StatusSeeOther)
}
