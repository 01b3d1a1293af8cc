package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/wire"
)

func dmiRoot(t *testing.T, files map[string]string) hostinfo.Host {
	t.Helper()
	root := t.TempDir()
	for name, v := range files {
		p := filepath.Join(root, "sys/class/dmi/id", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return hostinfo.Host{Root: root}
}

// fakeIMDS answers like each cloud's metadata service, checking the headers
// each one requires.
func fakeIMDS(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "ttl", 400)
			return
		}
		fmt.Fprint(w, "tok")
	})
	mux.HandleFunc("GET /latest/dynamic/instance-identity/document", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token") != "tok" {
			http.Error(w, "no token", 401)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"instanceId": "i-0abc", "region": "eu-west-1", "availabilityZone": "eu-west-1a",
			"accountId": "123456789012", "instanceType": "t3.small"})
	})
	google := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Metadata-Flavor") != "Google" {
				http.Error(w, "flavor", 403)
				return
			}
			fmt.Fprint(w, body)
		}
	}
	mux.HandleFunc("GET /computeMetadata/v1/instance/id", google("4520031799277581759"))
	mux.HandleFunc("GET /computeMetadata/v1/instance/zone", google("projects/1234/zones/europe-west1-b"))
	mux.HandleFunc("GET /computeMetadata/v1/project/project-id", google("acme-prod"))
	mux.HandleFunc("GET /computeMetadata/v1/instance/machine-type", google("projects/1234/machineTypes/e2-medium"))
	mux.HandleFunc("GET /metadata/instance/compute", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" {
			http.Error(w, "metadata header", 400)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6", "location": "westeurope",
			"zone": "1", "subscriptionId": "8d10da13-8125-4ba9-a717-bf7490507b3d", "vmSize": "Standard_D2s_v5"})
	})
	mux.HandleFunc("GET /opc/v2/instance/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer Oracle" {
			http.Error(w, "auth", 401)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": "ocid1.instance.oc1.phx.abc", "canonicalRegionName": "us-phoenix-1",
			"availabilityDomain": "AD-1", "tenantId": "ocid1.tenancy.oc1..xyz", "shape": "VM.Standard.E4.Flex"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestDetect(t *testing.T) {
	t.Parallel()
	srv := fakeIMDS(t)
	tests := []struct {
		name    string
		dmi     map[string]string
		wantEnv string
		wantMD  *wire.CloudMetadata
	}{
		{"aws nitro", map[string]string{"sys_vendor": "Amazon EC2", "product_name": "t3.small"}, wire.EnvAWS,
			&wire.CloudMetadata{InstanceID: "i-0abc", Region: "eu-west-1", Zone: "eu-west-1a", AccountID: "123456789012", InstanceType: "t3.small"}},
		{"aws xen", map[string]string{"sys_vendor": "Xen", "product_uuid": "EC2E1916-9099-7CAF-FD21-012345ABCDEF", "bios_version": "4.11.amazon"}, wire.EnvAWS,
			&wire.CloudMetadata{InstanceID: "i-0abc", Region: "eu-west-1", Zone: "eu-west-1a", AccountID: "123456789012", InstanceType: "t3.small"}},
		{"gcp", map[string]string{"sys_vendor": "Google", "product_name": "Google Compute Engine"}, wire.EnvGCP,
			&wire.CloudMetadata{InstanceID: "4520031799277581759", Region: "europe-west1", Zone: "europe-west1-b", AccountID: "acme-prod", InstanceType: "e2-medium"}},
		{"azure", map[string]string{"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine", "chassis_asset_tag": azureAssetTag}, wire.EnvAzure,
			&wire.CloudMetadata{InstanceID: "02aab8a4-74ef-476e-8182-f6d2ba4166a6", Region: "westeurope", Zone: "1", AccountID: "8d10da13-8125-4ba9-a717-bf7490507b3d", InstanceType: "Standard_D2s_v5"}},
		{"hyper-v on premises", map[string]string{"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine", "bios_vendor": "American Megatrends"}, wire.EnvOnPrem, nil},
		{"oci", map[string]string{"sys_vendor": "QEMU", "chassis_asset_tag": "OracleCloud.com"}, wire.EnvOCI,
			&wire.CloudMetadata{InstanceID: "ocid1.instance.oc1.phx.abc", Region: "us-phoenix-1", Zone: "AD-1", AccountID: "ocid1.tenancy.oc1..xyz", InstanceType: "VM.Standard.E4.Flex"}},
		{"vmware", map[string]string{"sys_vendor": "VMware, Inc.", "product_name": "VMware7,1"}, wire.EnvVMware, nil},
		{"bare metal", map[string]string{"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R650"}, wire.EnvOnPrem, nil},
		{"no dmi", nil, wire.EnvOnPrem, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, md := Detector{Host: dmiRoot(t, tt.dmi), IMDS: srv.URL}.Detect(context.Background())
			if env != tt.wantEnv {
				t.Errorf("environment %q, want %q", env, tt.wantEnv)
			}
			if diff := cmp.Diff(tt.wantMD, md); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetectKeepsTheEnvironmentWhenIMDSIsUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	start := time.Now()
	env, md := Detector{Host: dmiRoot(t, map[string]string{"sys_vendor": "Amazon EC2"}), IMDS: srv.URL, Timeout: 200 * time.Millisecond}.Detect(context.Background())
	if env != wire.EnvAWS || md != nil {
		t.Errorf("got %q %+v, want AWS without metadata", env, md)
	}
	if time.Since(start) > 10*time.Second { // the fake IMDS never answers: only the timeout ends this
		t.Errorf("detection waited %s for a silent IMDS", time.Since(start))
	}
}

// --imds-endpoint none: the metadata service is never asked; DMI alone
// decides the environment.
func TestNoIMDS(t *testing.T) {
	t.Parallel()
	asked := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked = true }))
	t.Cleanup(srv.Close)
	env, md := Detector{Host: dmiRoot(t, map[string]string{"sys_vendor": "Amazon EC2"}), IMDS: NoIMDS}.Detect(context.Background())
	if env != wire.EnvAWS || md != nil || asked {
		t.Errorf("with IMDS none: %s %+v (asked %v)", env, md, asked)
	}
}
