package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/protection"
	"github.com/corralhq/corral/internal/wire"
)

// Endpoint protection routes.
const (
	protSubPath     = subPath + "/protection"
	protRGPath      = rgPath + "/protection"
	protMachinePath = machinePath + "/protection"
	scanPath        = machinePath + "/scans"
	quarantinePath  = machinePath + "/quarantine"
	alertsPath      = "/api/v1/protection/alerts"
	sigSetsPath     = "/api/v1/protection/signatureSets"
)

// maxImportBytes bounds the ClamAV files of one import, together.
const maxImportBytes = 512 << 20

var alertQuery = pageQuery(
	QueryParam{Name: "scope", Description: "Only alerts of machines at or below this scope.", Type: "string"},
	QueryParam{Name: "machine", Description: "Only alerts of machines with this name.", Type: "string"},
	QueryParam{Name: "state", Description: "Only alerts in this state.", Type: "string", Enum: []string{wire.AlertActive, wire.AlertAcknowledged}},
)

func (a *API) protectionRoutes() []Route {
	api := func(m, p, action string, scope func(*http.Request) string, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthBearer, Scope: scope, Summary: summary, Handle: h}
	}
	described := func(rt Route, req, resp any, status int, errs ...int) Route {
		rt.Request, rt.Response, rt.Status, rt.Errors = req, resp, status, errs
		return rt
	}
	withQuery := func(rt Route, q []QueryParam) Route { rt.Query = q; return rt }
	// enabling answers 201 when the scope was not protected yet
	orCreated := func(rt Route) Route { rt.AlsoStatus = []int{http.StatusCreated}; return rt }
	return []Route{
		orCreated(described(api("PUT", protSubPath, authz.ActProtectionWrite, scopeSub,
			"Enable endpoint protection on a subscription: Corral/EndpointProtection on every machine in it, now and later (ProtectionEnable).", a.putProtection),
			wire.ProtectionEnable{}, wire.ProtectionAssignment{}, http.StatusOK, 400, 404)),
		described(api("GET", protSubPath, authz.ActProtectionRead, scopeSub, "Endpoint protection as enabled on a subscription.", a.getProtection),
			nil, wire.ProtectionAssignment{}, http.StatusOK, 404),
		described(api("DELETE", protSubPath, authz.ActProtectionDelete, scopeSub,
			"Disable endpoint protection on a subscription: its machines lose the extension unless a protected resource group covers them.", a.deleteProtection),
			nil, nil, http.StatusNoContent, 404),
		orCreated(described(api("PUT", protRGPath, authz.ActProtectionWrite, scopeRG,
			"Enable endpoint protection on a resource group: Corral/EndpointProtection on every machine in it, now and later (ProtectionEnable).", a.putProtection),
			wire.ProtectionEnable{}, wire.ProtectionAssignment{}, http.StatusOK, 400, 404)),
		described(api("GET", protRGPath, authz.ActProtectionRead, scopeRG, "Endpoint protection as enabled on a resource group.", a.getProtection),
			nil, wire.ProtectionAssignment{}, http.StatusOK, 404),
		described(api("DELETE", protRGPath, authz.ActProtectionDelete, scopeRG,
			"Disable endpoint protection on a resource group: its machines lose the extension unless their subscription is protected.", a.deleteProtection),
			nil, nil, http.StatusNoContent, 404),
		withQuery(described(api("GET", "/api/v1/protection/assignments", authz.ActProtectionRead, scopeQuery,
			"List the scopes endpoint protection is enabled on, at or below ?scope=.", a.listProtection),
			nil, wire.List[wire.ProtectionAssignment]{}, http.StatusOK, 400),
			[]QueryParam{{Name: "scope", Description: "a scope; default /", Type: "string"}}),
		described(api("GET", subPath+"/machineProtection", authz.ActProtectionRead, scopeSub,
			"The endpoint protection status of every machine of a subscription.", a.listMachineProtection),
			nil, wire.List[wire.MachineProtection]{}, http.StatusOK, 404),
		described(api("GET", rgPath+"/machineProtection", authz.ActProtectionRead, scopeRG,
			"The endpoint protection status of every machine of a resource group.", a.listMachineProtection),
			nil, wire.List[wire.MachineProtection]{}, http.StatusOK, 404),
		described(api("GET", protMachinePath, authz.ActProtectionRead, scopeMachine,
			"A machine's endpoint protection: its scope, extension state and the status its agent reported.", a.getMachineProtection),
			nil, wire.MachineProtection{}, http.StatusOK, 404),

		described(api("POST", scanPath, authz.ActScansWrite, scopeMachine,
			"Scan a machine: quick (common drop locations), full (every local filesystem) or custom paths (ScanCreate).", a.postScan),
			wire.ScanCreate{}, wire.Scan{}, http.StatusCreated, 400, 404, 409),
		withQuery(described(api("GET", scanPath, authz.ActScansRead, scopeMachine, "List a machine's scans, newest first.", a.listScans),
			nil, wire.List[wire.Scan]{}, http.StatusOK, 400, 404), pageQuery()),
		described(api("GET", scanPath+"/{id}", authz.ActScansRead, scopeMachine, "A scan with its result.", a.getScan),
			nil, wire.Scan{}, http.StatusOK, 404),
		described(api("GET", quarantinePath, authz.ActQuarantineRead, scopeMachine, "The files a machine's endpoint protection quarantined.", a.listQuarantine),
			nil, wire.List[wire.QuarantineEntry]{}, http.StatusOK, 404),
		described(api("POST", quarantinePath+"/{qid}/restore", authz.ActQuarantineRestore, scopeMachine,
			"Put a quarantined file back where it was, with its owner and mode, and exclude its SHA-256 unless noExclusion (RestoreCreate).", a.postRestore),
			wire.RestoreCreate{}, wire.Restore{}, http.StatusAccepted, 400, 404, 409),
		described(api("GET", machinePath+"/restores/{id}", authz.ActQuarantineRead, scopeMachine, "A restore request with its outcome.", a.getRestore),
			nil, wire.Restore{}, http.StatusOK, 404),

		withQuery(described(api("GET", alertsPath, authz.ActAlertsRead, scopeQuery,
			"List alerts (detections) newest first, by scope, machine name and state.", a.listAlerts),
			nil, wire.List[wire.Alert]{}, http.StatusOK, 400), alertQuery),
		described(Route{Method: "GET", Pattern: alertsPath + "/{id}", Action: authz.ActAlertsRead, Auth: AuthBearer, CheckInHandler: true,
			Scope: scopeRoot, Summary: "An alert (authorized at its machine).", Handle: a.getAlert},
			nil, wire.Alert{}, http.StatusOK, 404),
		described(Route{Method: "POST", Pattern: alertsPath + "/{id}/acknowledge", Action: authz.ActAlertsAcknowledge, Auth: AuthBearer,
			CheckInHandler: true, Scope: scopeRoot, Summary: "Acknowledge an alert (authorized at its machine).", Handle: a.postAcknowledge},
			NoBody{}, wire.Alert{}, http.StatusOK, 404),

		described(api("POST", sigSetsPath, authz.ActSignaturesWrite, scopeRoot,
			"Import ClamAV .hdb/.hsb/.ndb files (multipart/form-data, one part per file) as the next signed signature set, sent to every protected machine.", a.postSignatureSet),
			Raw{ContentTypes: []string{"multipart/form-data"}, Description: "One part per ClamAV file (.hdb, .hsb, .ndb), at most 512 MiB together."}, wire.SignatureSet{}, http.StatusCreated, 400, 413, 415),
		withQuery(described(api("GET", sigSetsPath, authz.ActSignaturesRead, scopeRoot, "List the imported signature sets, newest first.", a.listSignatureSets),
			nil, wire.List[wire.SignatureSet]{}, http.StatusOK, 400), pageQuery()),

		{Method: "GET", Pattern: wire.PathProtectionSignatures + "{version}", Action: actAgentSignatures, Auth: AuthMachine,
			Scope: func(r *http.Request) string { return machineScopeOf(r) }, Summary: "A signed signature set (machine certificate).",
			Handle: a.getAgentSignatureSet, Status: http.StatusOK, Errors: []int{400, 404},
			Response: Raw{ContentTypes: []string{"application/octet-stream"}, Description: "The signed signature set archive."}},
	}
}

// actAgentSignatures names an agent's signature set download.
const actAgentSignatures = "Corral.HybridCompute/machines/signatureSets/read"

func scopeRefOf(r *http.Request) protection.ScopeRef {
	return protection.ScopeRef{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg")}
}

func (a *API) putProtection(w http.ResponseWriter, r *http.Request, c *Caller) error {
	body := wire.ProtectionEnable{Settings: wire.DefaultProtectionSettings()}
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	res, err := a.Protection.Enable(r.Context(), scopeRefOf(r), body, c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, res.Summary())
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, res.Assignment)
	return nil
}

func (a *API) getProtection(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := a.Protection.GetAssignment(r.Context(), scopeRefOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) deleteProtection(w http.ResponseWriter, r *http.Request, c *Caller) error {
	removed, err := a.Protection.Disable(r.Context(), scopeRefOf(r), c.Name)
	setAuditMessage(r, fmt.Sprintf("disable endpoint protection: removed from %d machines", removed))
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listProtection(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	scope := scopeQuery(r)
	if _, err := resource.ParseScope(scope); err != nil {
		return errValidation("scope", "%v", err)
	}
	ps, err := a.Protection.ListAssignments(r.Context(), scope)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.ProtectionAssignment]{Value: ps})
	return nil
}

func (a *API) listMachineProtection(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	ps, err := a.Protection.ListMachineStatus(r.Context(), r.PathValue("sub"), r.PathValue("rg"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.MachineProtection]{Value: ps})
	return nil
}

func (a *API) getMachineProtection(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := a.Protection.MachineStatus(r.Context(), machineRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) postScan(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.ScanCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	sc, err := a.Protection.StartScan(r.Context(), machineRef(r), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, sc.MachineID+"/scans/"+sc.ID)
	setAuditMessage(r, fmt.Sprintf("%s scan %s of %s requested", sc.Type, sc.ID, sc.Machine))
	writeJSON(w, http.StatusCreated, sc)
	return nil
}

func (a *API) listScans(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Protection.ListScans(r.Context(), machineRef(r), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getScan(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sc, err := a.Protection.GetScan(r.Context(), machineRef(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sc)
	return nil
}

func (a *API) listQuarantine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	q, err := a.Protection.Quarantine(r.Context(), machineRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.QuarantineEntry]{Value: q})
	return nil
}

func (a *API) postRestore(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.RestoreCreate
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
			return err
		}
	}
	qid := r.PathValue("qid")
	setAuditScope(r, scopeMachine(r)+"/quarantine/"+qid)
	rs, err := a.Protection.RequestRestore(r.Context(), machineRef(r), qid, body, c.Name)
	if err != nil {
		return err
	}
	msg := "restore of quarantine entry " + qid + " requested"
	if body.NoExclusion {
		msg += " (no exclusion)"
	}
	setAuditMessage(r, msg)
	writeJSON(w, http.StatusAccepted, rs)
	return nil
}

func (a *API) getRestore(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	rs, err := a.Protection.GetRestore(r.Context(), machineRef(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rs)
	return nil
}

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	page, err := a.Protection.ListAlerts(r.Context(), protection.AlertQuery{Scope: scopeQuery(r), Machine: q.Get("machine"),
		State: q.Get("state"), Page: p})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

// alertFor loads an alert for c, authorized at the alert's machine: a
// caller without the action anywhere is refused before the alert is looked
// up, so ids are not probed.
func (a *API) alertFor(r *http.Request, c *Caller, action string) (wire.Alert, error) {
	return lookupAt(a, r, c, action, func(ctx context.Context) (wire.Alert, error) { return a.Protection.GetAlert(ctx, r.PathValue("id")) },
		func(al wire.Alert) found { return found{scope: al.MachineID} })
}

func (a *API) getAlert(w http.ResponseWriter, r *http.Request, c *Caller) error {
	al, err := a.alertFor(r, c, authz.ActAlertsRead)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, al)
	return nil
}

func (a *API) postAcknowledge(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.alertFor(r, c, authz.ActAlertsAcknowledge); err != nil {
		return err
	}
	al, changed, err := a.Protection.Acknowledge(r.Context(), r.PathValue("id"), c.Name)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("acknowledge alert %s (%s at %s on %s)", al.ID, al.Signature, al.Path, al.Machine)
	if !changed {
		msg += ": already acknowledged by " + al.AcknowledgedBy
	}
	setAuditMessage(r, msg)
	writeJSON(w, http.StatusOK, al)
	return nil
}

// postSignatureSet takes the ClamAV files as multipart/form-data parts
// (their file names say the format), writes them to a private temporary
// directory and imports them.
func (a *API) postSignatureSet(w http.ResponseWriter, r *http.Request, c *Caller) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return &apiError{status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia,
			message: "send the signature files as multipart/form-data, one part per .hdb, .hsb or .ndb file"}
	}
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge,
		message: fmt.Sprintf("the signature files are larger than %d bytes together", maxImportBytes)}
	if r.ContentLength > maxImportBytes {
		return tooLarge
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBytes+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return errBadRequest(wire.CodeBadRequest, "", "the multipart body cannot be read: %v", err)
	}
	dir, err := os.MkdirTemp("", "corral-signatures-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var files []string
	seen := map[string]bool{}
	var total int64
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return tooLarge
			}
			return errBadRequest(wire.CodeBadRequest, "", "the multipart body cannot be read: %v", err)
		}
		name := filepath.Base(strings.ReplaceAll(part.FileName(), `\`, "/"))
		if part.FileName() == "" {
			part.Close()
			continue
		}
		ext := strings.ToLower(filepath.Ext(name))
		if ext != ".hdb" && ext != ".hsb" && ext != ".ndb" || !resource.ValidName(strings.TrimSuffix(name, filepath.Ext(name))) {
			return errValidation("files", "%q is not a signature file name: use NAME.hdb, NAME.hsb or NAME.ndb", part.FileName())
		}
		if seen[strings.ToLower(name)] {
			return errValidation("files", "%q is given twice", name)
		}
		seen[strings.ToLower(name)] = true
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, io.LimitReader(part, maxImportBytes-total+1))
		f.Close()
		part.Close()
		total += n
		if total > maxImportBytes {
			return tooLarge
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return tooLarge
			}
			return errBadRequest(wire.CodeBadRequest, "", "could not read %s: %v", name, err)
		}
		files = append(files, path)
	}
	set, err := a.Protection.Import(r.Context(), files, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, "/protection/signatureSets/"+strconv.FormatUint(set.Version, 10))
	setAuditMessage(r, fmt.Sprintf("import signature set %d: %d hash and %d body signatures from %s (%d lines unsupported)",
		set.Version, set.HashSignatures, set.BodySignatures, strings.Join(set.Sources, ", "), set.Unsupported))
	writeJSON(w, http.StatusCreated, set)
	return nil
}

func (a *API) listSignatureSets(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Protection.ListSignatureSets(r.Context(), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getAgentSignatureSet(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	b, err := a.Protection.SignatureSetForMachine(r.Context(), r.PathValue("version"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}
