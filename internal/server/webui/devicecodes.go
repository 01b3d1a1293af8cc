package webui

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/corralhq/corral/internal/wire"
)

// userCodeRE is the shape of a device-code onboarding's user code
// (XXXX-XXXX; the dash may be left out).
var userCodeRE = regexp.MustCompile(`^[A-Z0-9]{4}-?[A-Z0-9]{4}$`)

// normalizeUserCode upper-cases a typed code and puts the dash back.
func normalizeUserCode(s string) (string, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !userCodeRE.MatchString(s) {
		return s, false
	}
	if len(s) == 8 {
		s = s[:4] + "-" + s[4:]
	}
	return s, true
}

// deviceCodesData is the device-code approval page. The device-code flow's
// verification_uri points here, often with ?code= filled in.
type deviceCodesData struct {
	Code    string
	Pending []wire.PendingDeviceCode
}

func (h *Handler) deviceCodes(u *uiRequest) {
	code := u.r.URL.Query().Get("code")
	if c, ok := normalizeUserCode(code); ok {
		code = c
	}
	p := &page{Title: "Device codes", Nav: "devicecodes", Me: &u.me}
	if c := u.r.URL.Query().Get("approved"); c != "" {
		if c, ok := normalizeUserCode(c); ok {
			p.Notice = "Code " + c + " approved. The agent can finish onboarding now."
		}
	}
	h.showDeviceCodes(u, http.StatusOK, p, code)
}

func (h *Handler) showDeviceCodes(u *uiRequest, status int, p *page, code string) {
	d := &deviceCodesData{Code: code}
	p.Data = d
	pending, err := u.api.ListDeviceCodes(u.ctx())
	if err != nil {
		if p.Error == nil {
			p.Error = h.toUIError(u.r, err)
			status = p.Error.Status
		}
	} else {
		d.Pending = pending
	}
	h.render(u.w, u.r, status, "devicecodes", p)
}

// approveDeviceCode goes through the API, which checks that the caller may
// onboard into the code's resource group and records the approval.
func (h *Handler) approveDeviceCode(u *uiRequest) {
	p := &page{Title: "Device codes", Nav: "devicecodes", Me: &u.me}
	code, ok := normalizeUserCode(u.r.PostForm.Get("code"))
	if !ok {
		p.Error = &uiError{Status: http.StatusBadRequest, Code: wire.CodeValidation,
			Message: "Enter the 8-character code that corral-agent printed, for example BCDF-GHJK."}
		h.showDeviceCodes(u, http.StatusBadRequest, p, u.r.PostForm.Get("code"))
		return
	}
	ap, err := u.api.ApproveDeviceCode(u.ctx(), code)
	if err != nil {
		p.Error = h.toUIError(u.r, err)
		p.Error.Message = "Code " + code + " was not approved: " + p.Error.Message
		h.showDeviceCodes(u, p.Error.Status, p, code)
		return
	}
	http.Redirect(u.w, u.r, "/ui/devicecodes?"+url.Values{"approved": {ap.UserCode}}.Encode(), http.StatusSeeOther)
}
