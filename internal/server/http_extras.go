package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func writeHealth(w http.ResponseWriter, status int, h wire.Health) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(h)
}

// securityHeaders sets headers every response should carry.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// machineCollector exports machine counts by status at scrape time.
type machineCollector struct {
	st   store.Machines
	log  *slog.Logger
	desc *prometheus.Desc
}

func newMachineCollector(st store.Machines, log *slog.Logger) *machineCollector {
	return &machineCollector{st: st, log: log, desc: prometheus.NewDesc("corral_machines", "Machines by status.", []string{"status"}, nil)}
}

func (c *machineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *machineCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.st.CountMachinesByStatus(ctx)
	if err != nil {
		c.log.Error("count machines for metrics", "err", err)
		return
	}
	for _, st := range []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}
