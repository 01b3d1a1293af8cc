package client

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// ProtectionPath is the endpoint protection resource of a subscription or
// resource group id.
func ProtectionPath(scope resource.ID) string { return resourcePath(scope) + "/protection" }

// EnableProtection turns endpoint protection on for scope (a subscription
// or resource group id).
func (c *Client) EnableProtection(ctx context.Context, scope resource.ID, in wire.ProtectionEnable) (wire.ProtectionAssignment, error) {
	var a wire.ProtectionAssignment
	err := c.do(ctx, http.MethodPut, ProtectionPath(scope), in, &a)
	return a, err
}

// DisableProtection turns endpoint protection off for scope.
func (c *Client) DisableProtection(ctx context.Context, scope resource.ID) error {
	return c.do(ctx, http.MethodDelete, ProtectionPath(scope), nil, nil)
}

// GetProtection reads protection as enabled on scope.
func (c *Client) GetProtection(ctx context.Context, scope resource.ID) (wire.ProtectionAssignment, error) {
	var a wire.ProtectionAssignment
	err := c.do(ctx, http.MethodGet, ProtectionPath(scope), nil, &a)
	return a, err
}

// ListProtection lists the scopes protection is enabled on at or below scope.
func (c *Client) ListProtection(ctx context.Context, scope string) ([]wire.ProtectionAssignment, error) {
	return listAll[wire.ProtectionAssignment](ctx, c, "/api/v1/protection/assignments?"+url.Values{"scope": {scope}}.Encode(), 0)
}

// ListMachineProtection lists the protection of the machines of a
// subscription or resource group id.
func (c *Client) ListMachineProtection(ctx context.Context, scope resource.ID) ([]wire.MachineProtection, error) {
	return listAll[wire.MachineProtection](ctx, c, resourcePath(scope)+"/machineProtection", 0)
}

// GetMachineProtection reads one machine's protection.
func (c *Client) GetMachineProtection(ctx context.Context, sub, rg, machine string) (wire.MachineProtection, error) {
	var p wire.MachineProtection
	err := c.do(ctx, http.MethodGet, machinePath(sub, rg, machine)+"/protection", nil, &p)
	return p, err
}

// StartScan asks a machine for a scan.
func (c *Client) StartScan(ctx context.Context, sub, rg, machine string, in wire.ScanCreate) (wire.Scan, error) {
	var s wire.Scan
	err := c.do(ctx, http.MethodPost, machinePath(sub, rg, machine)+"/scans", in, &s)
	return s, err
}

// GetScan reads a scan of a machine.
func (c *Client) GetScan(ctx context.Context, sub, rg, machine, id string) (wire.Scan, error) {
	var s wire.Scan
	err := c.do(ctx, http.MethodGet, machinePath(sub, rg, machine)+"/scans/"+url.PathEscape(id), nil, &s)
	return s, err
}

// ListScans lists a machine's scans, newest first (max 0: all).
func (c *Client) ListScans(ctx context.Context, sub, rg, machine string, max int) ([]wire.Scan, error) {
	return listAll[wire.Scan](ctx, c, machinePath(sub, rg, machine)+"/scans", max)
}

// ListQuarantine lists a machine's quarantined files.
func (c *Client) ListQuarantine(ctx context.Context, sub, rg, machine string) ([]wire.QuarantineEntry, error) {
	return listAll[wire.QuarantineEntry](ctx, c, machinePath(sub, rg, machine)+"/quarantine", 0)
}

// RestoreQuarantined asks a machine to restore quarantine entry id.
func (c *Client) RestoreQuarantined(ctx context.Context, sub, rg, machine, id string, in wire.RestoreCreate) (wire.Restore, error) {
	var r wire.Restore
	err := c.do(ctx, http.MethodPost, machinePath(sub, rg, machine)+"/quarantine/"+url.PathEscape(id)+"/restore", in, &r)
	return r, err
}

// GetRestore reads a restore request.
func (c *Client) GetRestore(ctx context.Context, sub, rg, machine, id string) (wire.Restore, error) {
	var r wire.Restore
	err := c.do(ctx, http.MethodGet, machinePath(sub, rg, machine)+"/restores/"+url.PathEscape(id), nil, &r)
	return r, err
}

// AlertFilter selects alerts.
type AlertFilter struct {
	Scope   string
	Machine string
	State   string
	// Max bounds the number returned (0: all).
	Max int
}

// ListAlerts lists alerts, newest first.
func (c *Client) ListAlerts(ctx context.Context, f AlertFilter) ([]wire.Alert, error) {
	q := url.Values{}
	if f.Scope != "" {
		q.Set("scope", f.Scope)
	}
	if f.Machine != "" {
		q.Set("machine", f.Machine)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	path := "/api/v1/protection/alerts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return listAll[wire.Alert](ctx, c, path, f.Max)
}

// GetAlert reads one alert.
func (c *Client) GetAlert(ctx context.Context, id string) (wire.Alert, error) {
	var a wire.Alert
	err := c.do(ctx, http.MethodGet, "/api/v1/protection/alerts/"+url.PathEscape(id), nil, &a)
	return a, err
}

// AcknowledgeAlert acknowledges an alert.
func (c *Client) AcknowledgeAlert(ctx context.Context, id string) (wire.Alert, error) {
	var a wire.Alert
	err := c.do(ctx, http.MethodPost, "/api/v1/protection/alerts/"+url.PathEscape(id)+"/acknowledge", nil, &a)
	return a, err
}

// ImportSignatures uploads ClamAV signature files (.hdb, .hsb, .ndb) as the
// next signature set. The files are streamed, not held in memory.
func (c *Client) ImportSignatures(ctx context.Context, files ...string) (wire.SignatureSet, error) {
	var set wire.SignatureSet
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return set, fmt.Errorf("signature file: %w", err)
		}
	}
	target, err := c.resolve("/api/v1/protection/signatureSets")
	if err != nil {
		return set, err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			for _, f := range files {
				part, err := mw.CreateFormFile("file", filepath.Base(f))
				if err != nil {
					return err
				}
				r, err := os.Open(f)
				if err != nil {
					return fmt.Errorf("signature file: %w", err)
				}
				_, err = io.Copy(part, r)
				r.Close()
				if err != nil {
					return fmt.Errorf("read %s: %w", f, err)
				}
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, pr)
	if err != nil {
		pr.Close()
		return set, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	err = c.send(req, &set)
	pr.Close()
	return set, err
}

// ListSignatureSets lists the imported sets, newest first (max 0: all).
func (c *Client) ListSignatureSets(ctx context.Context, max int) ([]wire.SignatureSet, error) {
	return listAll[wire.SignatureSet](ctx, c, "/api/v1/protection/signatureSets", max)
}
