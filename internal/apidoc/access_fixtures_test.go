package apidoc

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/sshcert"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// jitFixtures are what the secure-access happy calls act on.
type jitFixtures struct {
	approve, reject string // requests waiting for approval, made by another principal
	publicKey       string // a client key for sshCertificate
}

// accessFixtures sets a JIT policy requiring approval on m1's resource
// group, makes two requests as another principal, and has m1 report that
// it manages SSH logins.
func accessFixtures(t *testing.T, s *testutil.Server, m1 *testutil.Machine, m1Path, adm string) jitFixtures {
	t.Helper()
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/jitPolicy?scope="+url.QueryEscape("/subscriptions/default/resourceGroups/rg1"), adm,
		wire.JITPolicySet{Ports: []string{"22"}, RequireApproval: true}, nil)
	requester := s.RolePrincipal(t, "JIT Requester", "/subscriptions/default")
	var f jitFixtures
	for _, id := range []*string{&f.approve, &f.reject} {
		var r wire.JITRequest
		s.MustDo(t, http.StatusCreated, "POST", m1Path+"/jitRequests", requester,
			wire.JITRequestCreate{Port: "22", SourceIP: "192.0.2.8", Duration: wire.Duration(time.Hour)}, &r)
		*id = r.ID
	}
	status := wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateNone},
		SSH: wire.SSHStatus{State: wire.SSHStateManaged, AdminUser: "corral-admin", User: "corral-user", HostKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheFixtureMachineForTheDocumentTest host"}}}
	body, err := json.Marshal(status)
	if err != nil {
		t.Fatal(err)
	}
	if st, b := s.DoMachine(t, m1, "POST", wire.PathReports, wire.ReportBatch{Reports: []wire.Report{{ID: "access-1", Kind: wire.ReportAccess,
		TakenAt: time.Now().UTC(), Body: body}}}); st != http.StatusOK || !strings.Contains(string(b), "access-1") {
		t.Fatalf("access report: %d %s", st, b)
	}
	k, err := sshcert.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f.publicKey = string(k.AuthorizedKey())
	return f
}
