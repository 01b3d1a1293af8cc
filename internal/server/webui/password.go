package webui

import (
	"errors"
	"net/http"

	"github.com/corralhq/corral/internal/wire"
)

// passwordData is the password change form.
type passwordData struct {
	// Required: the session may do nothing else (a password an
	// administrator set, to be changed at first sign-in).
	Required bool
}

func (h *Handler) passwordPage(u *uiRequest) {
	h.render(u.w, u.r, http.StatusOK, "password", &page{Title: "Change password", Me: &u.me,
		Data: passwordData{Required: u.me.PasswordChangeRequired}})
}

// changePassword changes the signed-in user's password through the API.
// Every session of the user ends with it, this one too: the browser signs
// in again with the new password.
func (h *Handler) changePassword(u *uiRequest) {
	pf := u.r.PostForm
	fail := func(status int, code, msg string) {
		h.render(u.w, u.r, status, "password", &page{Title: "Change password", Me: &u.me,
			Data: passwordData{Required: u.me.PasswordChangeRequired}, Error: &uiError{Status: status, Code: code, Message: msg}})
	}
	if pf.Get("new") != pf.Get("confirm") {
		fail(http.StatusBadRequest, wire.CodeValidation, "The new password and its confirmation differ.")
		return
	}
	err := u.api.ChangeMyPassword(u.ctx(), pf.Get("current"), pf.Get("new"))
	var ae *wire.APIError
	switch {
	case errors.As(err, &ae):
		fail(ae.Status, ae.Code, "The password was not changed: "+ae.Message+".")
		return
	case err != nil:
		ue := h.toUIError(u.r, err)
		fail(ue.Status, ue.Code, ue.Message)
		return
	}
	setCookie(u.w, sessionCookie, "", 0)
	http.Redirect(u.w, u.r, "/ui/signin?reason=passwordchanged", http.StatusSeeOther)
}
