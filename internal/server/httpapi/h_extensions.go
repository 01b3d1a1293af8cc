package httpapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/wire"
)

// catalogBodyLimit caps a signed catalog upload (JSON with base64 inside).
const catalogBodyLimit = 8 << 20

func scopeExtension(r *http.Request) string {
	return machineRef(r).ID().Extension(r.PathValue("ext")).String()
}

func scopeRunCommand(r *http.Request) string {
	return machineRef(r).ID().RunCommand(r.PathValue("run")).String()
}

// setAuditMessage names what a successful mutating call did, for the
// activity log. It must never hold settings, scripts or secrets.
func setAuditMessage(r *http.Request, msg string) { info(r).auditMessage = msg }

func (a *API) listPublishers(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	ps, err := a.Extensions.ListPublishers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.Publisher]{Value: ps})
	return nil
}

func (a *API) getPublisher(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := a.Extensions.GetPublisher(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) putPublisher(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.PublisherCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	name := r.PathValue("name")
	setAuditScope(r, resource.Publisher(name).String())
	p, created, err := a.Extensions.CreatePublisher(r.Context(), name, body.PublicKey, c.Name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		setAuditMessage(r, "register publisher "+p.Name)
	} else {
		setAuditMessage(r, "publisher "+p.Name+" already registered with this key")
	}
	writeJSON(w, status, p)
	return nil
}

// postPackage takes the raw archive as the body.
func (a *API) postPackage(w http.ResponseWriter, r *http.Request, c *Caller) error {
	name := r.PathValue("name")
	setAuditScope(r, resource.Publisher(name).String())
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/gzip" && mt != "application/x-gzip" && mt != "application/octet-stream") {
		return &apiError{status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia,
			message: "the package must be sent as the raw archive with Content-Type application/gzip or application/octet-stream"}
	}
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge,
		message: fmt.Sprintf("the package is larger than %d bytes", wire.MaxPackageBytes)}
	if r.ContentLength > wire.MaxPackageBytes {
		return tooLarge
	}
	archive, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxPackageBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge
		}
		return errBadRequest(wire.CodeBadRequest, "", "could not read the package body")
	}
	p, created, err := a.Extensions.PublishPackage(r.Context(), name, archive, c.Name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	msg := "publish " + p.Publisher + "/" + p.Type + " " + p.Version + " (" + p.Digest + ")"
	if created {
		status = http.StatusCreated
	} else {
		msg += ": already published"
	}
	setAuditMessage(r, msg)
	writeJSON(w, status, p)
	return nil
}

func (a *API) getCatalog(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sc, err := a.Extensions.GetCatalog(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sc)
	return nil
}

func (a *API) putCatalog(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.SignedCatalog
	if err := decodeJSON(w, r, catalogBodyLimit, &body); err != nil {
		return err
	}
	name := r.PathValue("name")
	setAuditScope(r, resource.Publisher(name).String())
	cat, err := a.Extensions.PutCatalog(r.Context(), name, body, c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, "catalog serial "+strconv.FormatInt(cat.Serial, 10)+" lists "+strconv.Itoa(len(cat.Packages))+" packages")
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (a *API) listExtensionPackages(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActExtensionPackagesRead); err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	size := p.Limit
	p.Limit++
	ps, err := a.Extensions.ListPackages(r.Context(), extensions.PackageFilter{Publisher: q.Get("publisher"), Type: q.Get("type"), Page: p})
	if err != nil {
		return err
	}
	out := wire.List[wire.ExtensionPackage]{Value: []wire.ExtensionPackage{}}
	for i, pkg := range ps {
		if i == size {
			out.NextLink = nextLink(r, extensions.PackagePageKey(ps[i-1]))
			break
		}
		out.Value = append(out.Value, pkg)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listMachineExtensions(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	es, err := a.Extensions.ListExtensions(r.Context(), machineRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.MachineExtension]{Value: es})
	return nil
}

func (a *API) getMachineExtension(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	e, err := a.Extensions.GetExtension(r.Context(), machineRef(r), r.PathValue("ext"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (a *API) putMachineExtension(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.MachineExtensionSet
	err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body)
	defer clear(body.ProtectedSettings)
	if err != nil {
		return err
	}
	res, err := a.Extensions.SetExtension(r.Context(), machineRef(r), r.PathValue("ext"), body, c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, res.Summary())
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, res.Extension)
	return nil
}

func (a *API) deleteMachineExtension(w http.ResponseWriter, r *http.Request, c *Caller) error {
	e, err := a.Extensions.DeleteExtension(r.Context(), machineRef(r), r.PathValue("ext"), c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, extensions.DeleteSummary(e))
	writeJSON(w, http.StatusAccepted, e)
	return nil
}

func (a *API) listRunCommands(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Extensions.ListRunCommands(r.Context(), machineRef(r), p)
	if err != nil {
		return err
	}
	out := wire.List[wire.RunCommand]{Value: page.Runs}
	if page.After != "" {
		out.NextLink = nextLink(r, page.After)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getRunCommand(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	rc, err := a.Extensions.GetRunCommand(r.Context(), machineRef(r), r.PathValue("run"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rc)
	return nil
}

func (a *API) putRunCommand(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.RunCommandCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	rc, err := a.Extensions.CreateRunCommand(r.Context(), machineRef(r), r.PathValue("run"), body, c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, extensions.RunSummary(rc))
	writeJSON(w, http.StatusCreated, rc)
	return nil
}

// getAgentCatalog serves a publisher's signed catalog to an agent.
func (a *API) getAgentCatalog(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sc, err := a.Extensions.CatalogForMachine(r.Context(), r.PathValue("publisher"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sc)
	return nil
}

// getAgentPackage serves a package archive the machine's desired state
// names, and nothing else.
func (a *API) getAgentPackage(w http.ResponseWriter, r *http.Request, c *Caller) error {
	b, err := a.Extensions.PackageForMachine(r.Context(), c.ID, r.PathValue("digest"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}
