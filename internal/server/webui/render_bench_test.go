package webui

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// sampleMachines is n machines that look like a real fleet: full
// properties, three tags, a mix of statuses, environments and agent support.
func sampleMachines(n int, now time.Time) []wire.Machine {
	envs := wire.Environments
	out := make([]wire.Machine, n)
	for i := range out {
		st := wire.StatusConnected
		switch i % 10 {
		case 7:
			st = wire.StatusDisconnected
		case 9:
			st = wire.StatusExpired
		}
		rg := fmt.Sprintf("rg-%02d", i%20)
		out[i] = wire.Machine{
			ID:   "/subscriptions/default/resourceGroups/" + rg + "/machines/" + fmt.Sprintf("host-%04d", i),
			Name: fmt.Sprintf("host-%04d", i), SubscriptionID: "default", ResourceGroup: rg,
			MachineID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Status: st,
			Tags:          map[string]string{"env": "prod", "team": fmt.Sprintf("team-%d", i%7), "tier": "web"},
			LastHeartbeat: now.Add(-time.Duration(i%600) * time.Second), AgentVersion: "2026.11.0", AgentSupported: i%13 != 0,
			Properties: wire.MachineProperties{OSName: "debian", OSVersion: "12", OSPrettyName: "Debian GNU/Linux 12 (bookworm)",
				Kernel: "6.1.0-27-amd64", Hostname: fmt.Sprintf("host-%04d", i), Environment: envs[i%len(envs)], CPUCount: 4, MemoryBytes: 8 << 30},
			CreatedAt: now.Add(-24 * time.Hour), CreatedBy: "onboard-web",
		}
	}
	return out
}

// BenchmarkInventoryRender measures the template alone: the inventory page
// with 1,000 machines (the largest page the API returns). Formatting the rows
// is part of the page, so BenchmarkInventoryRows covers it separately.
func BenchmarkInventoryRender(b *testing.B) {
	now := time.Now()
	h := New(Config{API: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler), Clock: func() time.Time { return now }, Version: "bench"})
	me := &wire.Me{ID: "usr-1", Name: "admin", Type: wire.PrincipalUser, Assignments: []wire.RoleAssignment{{RoleName: "Owner", Scope: "/"}}}
	d := &inventoryData{Filter: machineFilter{Sub: "default", Top: 1000}, Subscriptions: []string{"default"}, Environments: wire.Environments,
		Statuses: statuses, PageSizes: []int{25, 50, 100, 250, 500, 1000}, Rows: machineRows(sampleMachines(1000, now), "default", now), NextURL: "/ui/machines?skip=x&top=1000"}
	r := httptest.NewRequest(http.MethodGet, "/ui/machines?top=1000", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "bench-token"})
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.render(w, r, http.StatusOK, "machines", &page{Title: "Machines", Nav: "machines", Me: me, Data: d})
	}
	b.ReportMetric(float64(w.n)/float64(b.N), "B/page")
}

// BenchmarkInventoryRows measures formatting 1,000 API machines into rows.
func BenchmarkInventoryRows(b *testing.B) {
	now := time.Now()
	ms := sampleMachines(1000, now)
	b.ReportAllocs()
	for b.Loop() {
		_ = machineRows(ms, "default", now)
	}
}

type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return io.Discard.Write(p)
}
