package webui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// BenchmarkInventoryPage measures the whole page as a browser gets it: a
// real server with 1,000 machines in SQLite, GET /ui/machines?top=1000 over
// TLS with a session cookie — authentication, the in-process API calls, the
// store query, JSON both ways and the template.
func BenchmarkInventoryPage(b *testing.B) {
	s := testutil.StartServer(b)
	s.MustDo(b, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/fleet", s.AdminToken(b), wire.ResourceGroupCreate{}, nil)
	now := time.Now().UTC()
	props, _ := json.Marshal(awsProps)
	cfg, _ := json.Marshal(wire.AgentConfig{Mode: "full", ExtensionsEnabled: true})
	ctx := context.Background()
	for i := range 1000 {
		m := store.Machine{ID: uuid.NewString(), Subscription: "default", ResourceGroup: "fleet", Name: fmt.Sprintf("host-%04d", i),
			Tags: map[string]string{"env": "prod", "team": fmt.Sprintf("team-%d", i%7), "tier": "web"}, Status: wire.StatusConnected,
			LastHeartbeat: now, AgentVersion: "2026.11.0", Environment: wire.EnvAWS, OSName: "debian", Properties: props, AgentConfig: cfg,
			CertSerial: fmt.Sprint(1000 + i), CertNotAfter: now.Add(90 * 24 * time.Hour), CreatedAt: now, CreatedBy: "bench", UpdatedAt: now}
		if err := s.Srv.Store.CreateMachine(ctx, m, false); err != nil {
			b.Fatal(err)
		}
	}
	c := newUIClient(b, s)
	c.signIn("admin", testutil.AdminPassword)
	if r := c.get("/ui/machines?top=1000"); r.status != http.StatusOK || strings.Count(r.body, `<a class="strong"`) != 1000 {
		b.Fatalf("inventory: %d, %d rows", r.status, strings.Count(r.body, `<a class="strong"`))
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := c.get("/ui/machines?top=1000"); r.status != http.StatusOK {
			b.Fatalf("inventory: %d", r.status)
		}
	}
}
