package webui

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// extensionsData is the extensions section of the machine page: the list,
// and the form that installs, reconfigures or upgrades one.
type extensionsData struct {
	Extensions []extensionRow
	// ExtensionsErr says why the list could not be read (the API's answer).
	ExtensionsErr *uiError
	// ExtError is a set or remove that failed, shown next to the form.
	ExtError *uiError
	ExtForm  extensionForm
	// Packages feeds the Publisher/Type and version selects; without it the
	// form asks for them as text and PackagesNote says why.
	Packages        []packageChoice
	PackagesNote    string
	SetExtensionURL string
}

// extensionRow is one extension of the machine.
type extensionRow struct {
	wire.MachineExtension
	ChangeURL, RemoveURL string
	Highlight, Busy      bool
	// Deleting hides Remove: the removal was asked for already.
	Deleting bool
}

// extensionForm is the "Add or change extension" form as typed. It has no
// field for protected settings on purpose: they go from the posted form
// into the API request and are never rendered back, even after an error.
type extensionForm struct {
	Name, Package, Version, Settings string
	// Editing names the extension whose values filled the form.
	Editing bool
	// HasProtected says the extension being changed has protected settings
	// (left empty, the form keeps them).
	HasProtected bool
}

// packageChoice is one Publisher/Type that can be set, with the versions
// its publisher's signed catalog lists, newest first.
type packageChoice struct {
	Value    string // Publisher/Type
	Versions []string
}

// extensionBusy is true while the agent works on an extension's last request.
func extensionBusy(state string) bool {
	return state == wire.ExtCreating || state == wire.ExtUpdating || state == wire.ExtDeleting
}

// loadExtensions fills the extensions section and returns when the newest
// operation still in progress started (zero if none is).
func (h *Handler) loadExtensions(u *uiRequest, m wire.Machine, d *machineData, v machineView) time.Time {
	base := machineURL(m)
	d.SetExtensionURL = base + "/extensions"
	d.ExtError = v.extErr
	if v.extForm != nil {
		d.ExtForm = *v.extForm
	}
	var since time.Time
	ref := machineRef(u.r)
	exts, err := u.api.ListMachineExtensions(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name)
	if err != nil {
		d.ExtensionsErr = h.toUIError(u.r, err)
	}
	for _, e := range exts {
		row := extensionRow{MachineExtension: e, Highlight: e.Name == v.highlight, Busy: extensionBusy(e.State), Deleting: e.State == wire.ExtDeleting,
			ChangeURL: base + "?" + url.Values{"edit": {e.Name}}.Encode() + "#extension-form",
			RemoveURL: base + "/extensions/" + url.PathEscape(e.Name) + "/delete"}
		if row.Busy && e.UpdatedAt.After(since) {
			since = e.UpdatedAt
		}
		switch {
		case v.extForm == nil && v.edit != "" && strings.EqualFold(e.Name, v.edit):
			d.ExtForm = extensionForm{Name: e.Name, Package: e.Publisher + "/" + e.Type, Version: e.Version,
				Settings: indentJSON(e.Settings), Editing: true, HasProtected: e.HasProtectedSettings}
		case v.extForm != nil && strings.EqualFold(e.Name, v.extForm.Name):
			// A refused change of an existing extension: still a change.
			d.ExtForm.Editing, d.ExtForm.HasProtected = true, e.HasProtectedSettings
		}
		d.Extensions = append(d.Extensions, row)
	}
	if v.extForm == nil && v.edit != "" && !d.ExtForm.Editing && d.ExtensionsErr == nil && d.ExtError == nil {
		d.ExtError = &uiError{Status: http.StatusNotFound, Code: wire.CodeNotFound,
			Message: "There is no extension " + strconv.Quote(v.edit) + " on this machine to change."}
	}
	h.loadPackages(u, d)
	return since
}

// loadPackages reads the installable packages for the form's selects. The
// package list is global: the API allows it to whoever holds the read
// action at any scope, so anyone who can read a machine with a built-in
// role can read it; when refused, the caller types Publisher/Type instead
// and the API checks what they submit either way.
func (h *Handler) loadPackages(u *uiRequest, d *machineData) {
	pkgs, err := u.api.ListExtensionPackages(u.ctx(), "", "")
	if err != nil {
		d.PackagesNote = "The list of published packages could not be read (" + h.toUIError(u.r, err).Message +
			"). Enter the package as Publisher/Type."
		return
	}
	d.Packages = packageChoices(pkgs)
	if len(d.Packages) == 0 {
		d.PackagesNote = "No package is listed in a publisher's signed catalog. Enter the package as Publisher/Type."
	}
	// A changed extension keeps its own package in the select even if its
	// catalog no longer lists it: the API then says what is wrong.
	if f := d.ExtForm; f.Package != "" && len(d.Packages) > 0 &&
		!slices.ContainsFunc(d.Packages, func(c packageChoice) bool { return c.Value == f.Package }) {
		c := packageChoice{Value: f.Package}
		if f.Version != "" {
			c.Versions = []string{f.Version}
		}
		d.Packages = append(d.Packages, c)
	}
}

// packageChoices groups the listed packages by Publisher/Type, sorted by
// name, versions newest first. Versions that are uploaded but not in the
// signed catalog cannot be set, so they are left out.
func packageChoices(pkgs []wire.ExtensionPackage) []packageChoice {
	byName := map[string]*packageChoice{}
	var out []*packageChoice
	for _, p := range pkgs {
		if !p.Listed {
			continue
		}
		key := p.Publisher + "/" + p.Type
		c := byName[key]
		if c == nil {
			c = &packageChoice{Value: key}
			byName[key] = c
			out = append(out, c)
		}
		c.Versions = append(c.Versions, p.Version)
	}
	slices.SortFunc(out, func(a, b *packageChoice) int { return strings.Compare(a.Value, b.Value) })
	res := make([]packageChoice, len(out))
	for i, c := range out {
		slices.SortFunc(c.Versions, func(a, b string) int { return extpkg.CompareVersions(b, a) })
		res[i] = *c
	}
	return res
}

// indentJSON shows stored settings readably; "" when there are none.
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

// setExtension installs, reconfigures or upgrades an extension through the
// API's PUT, so extensions/write is checked at the extension's scope and
// the call is in the activity log as the user's.
func (h *Handler) setExtension(u *uiRequest) {
	pf := u.r.PostForm
	form := extensionForm{Name: strings.TrimSpace(pf.Get("name")), Package: strings.TrimSpace(pf.Get("package")),
		Version: strings.TrimSpace(pf.Get("version")), Settings: pf.Get("settings")}
	body, err := extensionSetBody(&form, pf.Get("protectedSettings"), pf.Get("clearProtectedSettings") != "")
	if err == nil {
		// Sent as is (json.RawMessage) and cleared: it may hold protected
		// settings in the clear.
		err = u.api.Do(u.ctx(), http.MethodPut, client.ResourcePath(machineRef(u.r).ID().Extension(form.Name)), json.RawMessage(body), nil)
		clear(body)
	}
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "The extension was not set: " + ue.Message
		h.showMachine(u, machineView{status: ue.Status, extErr: ue, extForm: &form})
		return
	}
	http.Redirect(u.w, u.r, machinePageURL(u.r)+"?"+url.Values{"extension": {form.Name}}.Encode()+"#extensions", http.StatusSeeOther)
}

// extensionSetBody checks the form and builds the API request. The name
// defaults to the type, as extensions are usually named. Settings must be
// JSON to be embedded in the request; whether they are an object, and all
// else, is the API's to say. Messages never repeat protected settings.
func extensionSetBody(f *extensionForm, protected string, clearProtected bool) ([]byte, error) {
	publisher, typ, ok := strings.Cut(f.Package, "/")
	publisher, typ = strings.TrimSpace(publisher), strings.TrimSpace(typ)
	if !ok || publisher == "" || typ == "" || strings.Contains(typ, "/") {
		return nil, formError("Choose a package: Publisher/Type, for example " + wire.ExtRunCommand + ".")
	}
	if f.Name == "" {
		f.Name = typ
	}
	if !resource.ValidName(f.Name) {
		return nil, formError("Name must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.")
	}
	req := wire.MachineExtensionSet{Publisher: publisher, Type: typ, Version: f.Version}
	if s := strings.TrimSpace(f.Settings); s != "" {
		if !json.Valid([]byte(s)) {
			return nil, formError("Public settings are not valid JSON.")
		}
		req.Settings = json.RawMessage(s)
	}
	ps := []byte(strings.TrimSpace(protected))
	defer clear(ps)
	switch {
	case len(ps) > 0 && clearProtected:
		return nil, formError("Either enter protected settings or remove them, not both. Protected settings are never shown again: enter them again.")
	case len(ps) > 0 && !json.Valid(ps):
		return nil, formError("Protected settings are not valid JSON. They are never shown again: enter them again.")
	case len(ps) > 0:
		req.ProtectedSettings = ps
	case clearProtected:
		req.ProtectedSettings = json.RawMessage("{}") // the API's way to remove them
	}
	return json.Marshal(req)
}

// deleteExtension removes an extension through the API's DELETE (202,
// state Deleting until the agent reports it gone).
func (h *Handler) deleteExtension(u *uiRequest) {
	name := u.r.PathValue("ext")
	ref := machineRef(u.r)
	_, err := u.api.DeleteMachineExtension(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name, name)
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "The extension was not removed: " + ue.Message
		h.showMachine(u, machineView{status: ue.Status, extErr: ue, highlight: name})
		return
	}
	http.Redirect(u.w, u.r, machinePageURL(u.r)+"?"+url.Values{"removed": {name}}.Encode()+"#extensions", http.StatusSeeOther)
}
