// Package cloud detects where a machine runs — AWS, GCP, Azure, OCI, VMware
// or on-premises — from its DMI/SMBIOS strings, and asks the cloud's
// instance metadata service (IMDS) for the instance id, region and account.
//
// DMI decides the environment; the metadata service only adds detail, so a
// machine whose IMDS is blocked is still placed in the right cloud. The IMDS
// address is configurable (tests run a loopback one); it is only contacted
// when DMI names a cloud, so on-premises machines never wait for it. Every
// request has a short timeout and a capped body, and redirects are refused.
package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/wire"
)

// DefaultIMDS is the link-local address every supported cloud uses.
const DefaultIMDS = "http://169.254.169.254"

// NoIMDS as the IMDS base turns the metadata lookup off: the environment
// comes from DMI alone, with no instance id, region or account.
const NoIMDS = "none"

// azureAssetTag is the chassis asset tag of every Azure VM.
const azureAssetTag = "7783-7084-3265-9085-8269-3286-77"

// Detector finds the environment of a host.
type Detector struct {
	Host hostinfo.Host
	// IMDS is the metadata service base URL; empty = DefaultIMDS.
	IMDS string
	// Timeout bounds all metadata requests together; zero = 3s.
	Timeout time.Duration
}

// FromDMI returns the environment the DMI strings name.
func FromDMI(h hostinfo.Host) string {
	sysVendor := strings.ToLower(h.Line("sys/class/dmi/id/sys_vendor"))
	product := strings.ToLower(h.Line("sys/class/dmi/id/product_name"))
	bios := strings.ToLower(h.Line("sys/class/dmi/id/bios_vendor"))
	biosVersion := strings.ToLower(h.Line("sys/class/dmi/id/bios_version"))
	asset := h.Line("sys/class/dmi/id/chassis_asset_tag")
	uuid := strings.ToLower(h.Line("sys/class/dmi/id/product_uuid"))
	switch {
	case strings.Contains(sysVendor, "amazon") || strings.Contains(bios, "amazon") || strings.Contains(biosVersion, "amazon") ||
		(strings.HasPrefix(uuid, "ec2") && strings.Contains(sysVendor, "xen")):
		return wire.EnvAWS
	case strings.Contains(sysVendor, "google") || strings.Contains(product, "google compute engine"):
		return wire.EnvGCP
	case asset == azureAssetTag || (strings.Contains(sysVendor, "microsoft") && strings.Contains(product, "virtual machine") && strings.Contains(bios, "microsoft")):
		return wire.EnvAzure
	case strings.EqualFold(asset, "OracleCloud.com") || strings.Contains(sysVendor, "oracle") && strings.Contains(product, "oci"):
		return wire.EnvOCI
	case strings.Contains(sysVendor, "vmware") || strings.Contains(product, "vmware"):
		return wire.EnvVMware
	}
	return wire.EnvOnPrem
}

// Detect returns the environment and, for clouds, what the metadata service
// says (nil when it does not answer).
func (d Detector) Detect(ctx context.Context) (string, *wire.CloudMetadata) {
	env := FromDMI(d.Host)
	base := strings.TrimRight(d.IMDS, "/")
	if base == NoIMDS {
		return env, nil // the metadata service is not to be asked (--imds-endpoint none)
	}
	if base == "" {
		base = DefaultIMDS
	}
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &imds{base: base, hc: &http.Client{
		Transport: &http.Transport{Proxy: nil}, // metadata services are never behind a proxy
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
	var md *wire.CloudMetadata
	var err error
	switch env {
	case wire.EnvAWS:
		md, err = c.aws(ctx)
	case wire.EnvGCP:
		md, err = c.gcp(ctx)
	case wire.EnvAzure:
		md, err = c.azure(ctx)
	case wire.EnvOCI:
		md, err = c.oci(ctx)
	default:
		return env, nil
	}
	if err != nil {
		return env, nil
	}
	return env, md
}

type imds struct {
	base string
	hc   *http.Client
}

const maxIMDSBody = 64 << 10

func (c *imds) get(ctx context.Context, method, path string, headers map[string]string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return "", err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxIMDSBody))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

// aws uses IMDSv2: a session token, then the instance identity document.
func (c *imds) aws(ctx context.Context) (*wire.CloudMetadata, error) {
	tok, err := c.get(ctx, http.MethodPut, "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if err != nil {
		return nil, err
	}
	doc, err := c.get(ctx, http.MethodGet, "/latest/dynamic/instance-identity/document", map[string]string{"X-aws-ec2-metadata-token": tok})
	if err != nil {
		return nil, err
	}
	var d struct {
		InstanceID, Region, AccountID, InstanceType, AvailabilityZone string
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, err
	}
	return &wire.CloudMetadata{InstanceID: d.InstanceID, Region: d.Region, Zone: d.AvailabilityZone, AccountID: d.AccountID, InstanceType: d.InstanceType}, nil
}

func (c *imds) gcp(ctx context.Context) (*wire.CloudMetadata, error) {
	h := map[string]string{"Metadata-Flavor": "Google"}
	id, err := c.get(ctx, http.MethodGet, "/computeMetadata/v1/instance/id", h)
	if err != nil {
		return nil, err
	}
	md := &wire.CloudMetadata{InstanceID: id}
	last := func(s string) string { return s[strings.LastIndex(s, "/")+1:] }
	if zone, err := c.get(ctx, http.MethodGet, "/computeMetadata/v1/instance/zone", h); err == nil {
		md.Zone = last(zone) // projects/123/zones/europe-west1-b
		if i := strings.LastIndex(md.Zone, "-"); i > 0 {
			md.Region = md.Zone[:i]
		}
	}
	if p, err := c.get(ctx, http.MethodGet, "/computeMetadata/v1/project/project-id", h); err == nil {
		md.AccountID = p
	}
	if mt, err := c.get(ctx, http.MethodGet, "/computeMetadata/v1/instance/machine-type", h); err == nil {
		md.InstanceType = last(mt)
	}
	return md, nil
}

func (c *imds) azure(ctx context.Context) (*wire.CloudMetadata, error) {
	doc, err := c.get(ctx, http.MethodGet, "/metadata/instance/compute?api-version=2021-02-01", map[string]string{"Metadata": "true"})
	if err != nil {
		return nil, err
	}
	var d struct {
		VMID           string `json:"vmId"`
		Location       string `json:"location"`
		Zone           string `json:"zone"`
		SubscriptionID string `json:"subscriptionId"`
		VMSize         string `json:"vmSize"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, err
	}
	return &wire.CloudMetadata{InstanceID: d.VMID, Region: d.Location, Zone: d.Zone, AccountID: d.SubscriptionID, InstanceType: d.VMSize}, nil
}

func (c *imds) oci(ctx context.Context) (*wire.CloudMetadata, error) {
	doc, err := c.get(ctx, http.MethodGet, "/opc/v2/instance/", map[string]string{"Authorization": "Bearer Oracle"})
	if err != nil {
		return nil, err
	}
	var d struct {
		ID                 string `json:"id"`
		CanonicalRegion    string `json:"canonicalRegionName"`
		AvailabilityDomain string `json:"availabilityDomain"`
		TenantID           string `json:"tenantId"`
		CompartmentID      string `json:"compartmentId"`
		Shape              string `json:"shape"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, err
	}
	acct := d.TenantID
	if acct == "" {
		acct = d.CompartmentID
	}
	return &wire.CloudMetadata{InstanceID: d.ID, Region: d.CanonicalRegion, Zone: d.AvailabilityDomain, AccountID: acct, InstanceType: d.Shape}, nil
}
