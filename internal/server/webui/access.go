package webui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// The secure-access page: the JIT request form, requests and grants with
// the time they have left (revoke, approve, reject), and SSH sessions
// (end). Every action goes through the API as the signed-in user.

// sessionsShown bounds the sessions listed.
const sessionsShown = 50

type accessData struct {
	Machines []machineOption
	Form     jitForm
	Requests []jitRow
	// RequestsErr and SessionsErr say why a list cannot be shown.
	RequestsErr *uiError
	Sessions    []sessionRow
	SessionsErr *uiError
	ShowAll     bool
}

type machineOption struct {
	Value, Label string
}

// jitForm is the request form as typed.
type jitForm struct {
	Machine, Port, SourceIP, Duration, Justification string
}

type jitRow struct {
	wire.JITRequest
	Class    string
	TimeLeft string
	Open     bool // may be revoked
	Pending  bool // may be approved or rejected
}

type sessionRow struct {
	wire.SSHSession
	Class    string
	To, From string
}

func jitClass(state string) string {
	switch state {
	case wire.JITApplied:
		return "badge badge-ok"
	case wire.JITFailed, wire.JITRejected:
		return "badge badge-bad"
	case wire.JITPending, wire.JITApproved:
		return "badge badge-busy"
	}
	return "badge"
}

// timeLeftText is "12m 30s left" for an open grant.
func timeLeftText(r wire.JITRequest, now time.Time) string {
	if r.ExpiresAt.IsZero() || (r.State != wire.JITApplied && r.State != wire.JITApproved) {
		return ""
	}
	d := r.ExpiresAt.Sub(now).Round(time.Second)
	if d <= 0 {
		return ""
	}
	return d.String() + " left"
}

func (h *Handler) access(u *uiRequest) {
	p := &page{Title: "Secure access", Nav: "access", Me: &u.me}
	switch {
	case u.r.URL.Query().Get("requested") != "":
		p.Notice = "JIT request " + u.r.URL.Query().Get("requested") + " made. Its state follows below; the machine's kernel closes it on time."
	case u.r.URL.Query().Get("done") != "":
		p.Notice = u.r.URL.Query().Get("done")
	}
	h.showAccess(u, http.StatusOK, p, jitForm{Duration: "1h", Port: "22"})
}

func (h *Handler) showAccess(u *uiRequest, status int, p *page, form jitForm) {
	d := &accessData{Form: form, ShowAll: u.r.URL.Query().Get("all") != ""}
	p.Data = d
	now := h.cfg.Clock()
	if ms, err := u.api.ListMachines(u.ctx(), client.MachineFilter{Subscription: defaultSubscription, PageSize: 1000}); err == nil {
		for _, m := range ms {
			d.Machines = append(d.Machines, machineOption{Value: m.SubscriptionID + "/" + m.ResourceGroup + "/" + m.Name,
				Label: m.Name + " (" + m.ResourceGroup + ")"})
		}
	}
	rs, err := u.api.ListJITRequests(u.ctx(), "", !d.ShowAll)
	if err != nil {
		d.RequestsErr = h.toUIError(u.r, err)
	}
	for _, r := range rs {
		state := r.State
		if state == wire.JITApproved && status == http.StatusOK {
			p.Refresh = 2 // follow the machine's confirmation
		}
		d.Requests = append(d.Requests, jitRow{JITRequest: r, Class: jitClass(state), TimeLeft: timeLeftText(r, now),
			Open:    state == wire.JITPending || state == wire.JITApproved || state == wire.JITApplied || state == wire.JITFailed,
			Pending: state == wire.JITPending})
	}
	xs, err := u.api.ListSSHSessions(u.ctx(), "", false)
	if err != nil {
		d.SessionsErr = h.toUIError(u.r, err)
	}
	for i, x := range xs {
		if i == sessionsShown {
			break
		}
		class := "badge"
		if x.State == wire.SessionActive {
			class = "badge badge-busy"
		}
		d.Sessions = append(d.Sessions, sessionRow{SSHSession: x, Class: class, To: formatBytes(uint64(max(x.BytesToMachine, 0))),
			From: formatBytes(uint64(max(x.BytesFromMachine, 0)))})
	}
	h.render(u.w, u.r, status, "access", p)
}

// requestJIT makes a JIT request from the form.
func (h *Handler) requestJIT(u *uiRequest) {
	pf := u.r.PostForm
	form := jitForm{Machine: pf.Get("machine"), Port: strings.TrimSpace(pf.Get("port")), SourceIP: strings.TrimSpace(pf.Get("sourceIp")),
		Duration: strings.TrimSpace(pf.Get("duration")), Justification: strings.TrimSpace(pf.Get("justification"))}
	p := &page{Title: "Secure access", Nav: "access", Me: &u.me}
	fail := func(err error) {
		p.Error = h.toUIError(u.r, err)
		p.Error.Message = "The port was not opened: " + p.Error.Message
		h.showAccess(u, p.Error.Status, p, form)
	}
	parts := strings.Split(form.Machine, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		fail(formError("Choose a machine."))
		return
	}
	d, err := time.ParseDuration(form.Duration)
	if err != nil {
		fail(formError("Duration must be a duration such as 30m or 1h."))
		return
	}
	r, err := u.api.RequestJIT(u.ctx(), parts[0], parts[1], parts[2], wire.JITRequestCreate{Port: form.Port, SourceIP: form.SourceIP,
		Duration: wire.Duration(d), Justification: form.Justification})
	if err != nil {
		fail(err)
		return
	}
	http.Redirect(u.w, u.r, "/ui/access?"+url.Values{"requested": {r.ID}}.Encode(), http.StatusSeeOther)
}

// jitAction revokes, approves or rejects a request.
func (h *Handler) jitAction(u *uiRequest) {
	id, action := u.r.PathValue("id"), u.r.PathValue("action")
	if action != "revoke" && action != "approve" && action != "reject" {
		h.notFound(u.w, u.r)
		return
	}
	r, err := u.api.JITRequestAction(u.ctx(), id, action)
	if err != nil {
		p := &page{Title: "Secure access", Nav: "access", Me: &u.me, Error: h.toUIError(u.r, err)}
		p.Error.Message = "JIT request " + id + " was not changed: " + p.Error.Message
		h.showAccess(u, p.Error.Status, p, jitForm{Duration: "1h", Port: "22"})
		return
	}
	http.Redirect(u.w, u.r, "/ui/access?"+url.Values{"done": {"JIT request " + r.ID + " is " + r.State + "."}}.Encode(), http.StatusSeeOther)
}

// endSession ends a running SSH session.
func (h *Handler) endSession(u *uiRequest) {
	id := u.r.PathValue("id")
	x, err := u.api.EndSSHSession(u.ctx(), id)
	if err != nil {
		p := &page{Title: "Secure access", Nav: "access", Me: &u.me, Error: h.toUIError(u.r, err)}
		p.Error.Message = "SSH session " + id + " was not ended: " + p.Error.Message
		h.showAccess(u, p.Error.Status, p, jitForm{Duration: "1h", Port: "22"})
		return
	}
	http.Redirect(u.w, u.r, "/ui/access?"+url.Values{"done": {"SSH session " + x.ID + " of " + x.User + " is ending."}}.Encode()+"#sessions", http.StatusSeeOther)
}
