package client

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

func publisherPath(name string) string { return resourcePath(resource.Publisher(name)) }

// CreatePublisher registers a publisher's ed25519 public key. Registering
// the same key again succeeds; another key for the name is a conflict.
func (c *Client) CreatePublisher(ctx context.Context, name string, publicKey []byte) (wire.Publisher, error) {
	var p wire.Publisher
	err := c.do(ctx, http.MethodPut, publisherPath(name), wire.PublisherCreate{PublicKey: publicKey}, &p)
	return p, err
}

// GetPublisher reads a registered publisher.
func (c *Client) GetPublisher(ctx context.Context, name string) (wire.Publisher, error) {
	var p wire.Publisher
	err := c.do(ctx, http.MethodGet, publisherPath(name), nil, &p)
	return p, err
}

// ListPublishers lists the registered publishers.
func (c *Client) ListPublishers(ctx context.Context) ([]wire.Publisher, error) {
	return listAll[wire.Publisher](ctx, c, "/api/v1/publishers", 0)
}

// UploadPackage uploads a package archive (tar.gz) of the publisher.
func (c *Client) UploadPackage(ctx context.Context, publisher string, archive []byte) (wire.ExtensionPackage, error) {
	var p wire.ExtensionPackage
	target, err := c.resolve(publisherPath(publisher) + "/packages")
	if err != nil {
		return p, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(archive))
	if err != nil {
		return p, err
	}
	req.Header.Set("Content-Type", "application/gzip")
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	err = c.send(req, &p)
	return p, err
}

// GetCatalog reads the publisher's current signed catalog (IsNotFound when
// it has none yet).
func (c *Client) GetCatalog(ctx context.Context, publisher string) (wire.SignedCatalog, error) {
	var sc wire.SignedCatalog
	err := c.do(ctx, http.MethodGet, publisherPath(publisher)+"/catalog", nil, &sc)
	return sc, err
}

// PutCatalog uploads a signed catalog of the publisher.
func (c *Client) PutCatalog(ctx context.Context, publisher string, sc wire.SignedCatalog) error {
	return c.do(ctx, http.MethodPut, publisherPath(publisher)+"/catalog", sc, nil)
}

// ListExtensionPackages lists uploaded packages, optionally of one
// publisher and type.
func (c *Client) ListExtensionPackages(ctx context.Context, publisher, typ string) ([]wire.ExtensionPackage, error) {
	q := url.Values{"$top": {"1000"}}
	if publisher != "" {
		q.Set("publisher", publisher)
	}
	if typ != "" {
		q.Set("type", typ)
	}
	return listAll[wire.ExtensionPackage](ctx, c, withQuery("/api/v1/extensionPackages", q), 0)
}

func extensionPath(sub, rg, machine, name string) string {
	return resourcePath(resource.Machine(sub, rg, machine).Extension(name))
}

// SetMachineExtension installs, reconfigures or upgrades an extension.
func (c *Client) SetMachineExtension(ctx context.Context, sub, rg, machine, name string, in wire.MachineExtensionSet) (wire.MachineExtension, error) {
	var e wire.MachineExtension
	err := c.do(ctx, http.MethodPut, extensionPath(sub, rg, machine, name), in, &e)
	return e, err
}

// GetMachineExtension reads one extension of a machine.
func (c *Client) GetMachineExtension(ctx context.Context, sub, rg, machine, name string) (wire.MachineExtension, error) {
	var e wire.MachineExtension
	err := c.do(ctx, http.MethodGet, extensionPath(sub, rg, machine, name), nil, &e)
	return e, err
}

// ListMachineExtensions lists a machine's extensions.
func (c *Client) ListMachineExtensions(ctx context.Context, sub, rg, machine string) ([]wire.MachineExtension, error) {
	return listAll[wire.MachineExtension](ctx, c, machinePath(sub, rg, machine)+"/extensions", 0)
}

// DeleteMachineExtension asks for an extension's removal; the result has
// state Deleting.
func (c *Client) DeleteMachineExtension(ctx context.Context, sub, rg, machine, name string) (wire.MachineExtension, error) {
	var e wire.MachineExtension
	err := c.do(ctx, http.MethodDelete, extensionPath(sub, rg, machine, name), nil, &e)
	return e, err
}

func runCommandPath(sub, rg, machine, name string) string {
	return resourcePath(resource.Machine(sub, rg, machine).RunCommand(name))
}

// CreateRunCommand starts a run of a script or command on a machine.
func (c *Client) CreateRunCommand(ctx context.Context, sub, rg, machine, name string, in wire.RunCommandCreate) (wire.RunCommand, error) {
	var rc wire.RunCommand
	err := c.do(ctx, http.MethodPut, runCommandPath(sub, rg, machine, name), in, &rc)
	return rc, err
}

// GetRunCommand reads a run with its result.
func (c *Client) GetRunCommand(ctx context.Context, sub, rg, machine, name string) (wire.RunCommand, error) {
	var rc wire.RunCommand
	err := c.do(ctx, http.MethodGet, runCommandPath(sub, rg, machine, name), nil, &rc)
	return rc, err
}

// ListRunCommands lists a machine's runs, newest first, at most max (0 = all).
func (c *Client) ListRunCommands(ctx context.Context, sub, rg, machine string, max int) ([]wire.RunCommand, error) {
	top := 100
	if max > 0 && max < top {
		top = max
	}
	return listAll[wire.RunCommand](ctx, c, fmt.Sprintf("%s/runCommands?$top=%d", machinePath(sub, rg, machine), top), max)
}
