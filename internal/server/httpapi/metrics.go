package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API's Prometheus instruments, registered on a registry
// owned by the server (not the global one, so several servers can run in one
// test process).
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	activityEntries prometheus.Counter
	certRejections  prometheus.Counter
	heartbeats      prometheus.Counter
	onboarded       prometheus.Counter
	// Streams is the number of live agent push channels on this server.
	Streams prometheus.Gauge
	// admissionRefused counts channels and onboardings refused under load.
	admissionRefused *prometheus.CounterVec
}

// NewMetrics creates and registers the instruments.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corral_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		activityEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corral_activity_entries_total", Help: "Activity log entries written.",
		}),
		certRejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corral_agent_certificate_rejections_total", Help: "Agent client certificates refused.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corral_agent_heartbeats_total", Help: "Heartbeats received from agents.",
		}),
		onboarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corral_machines_onboarded_total", Help: "Machines onboarded.",
		}),
		Streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corral_agent_streams", Help: "Live agent push channels on this server.",
		}),
		admissionRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_admission_refused_total", Help: "New agent channels and onboardings refused with a Retry-After (reconnect storms).",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.requests, m.duration, m.activityEntries, m.certRejections, m.heartbeats, m.onboarded, m.Streams, m.admissionRefused)
	return m
}

func (m *Metrics) observeRequest(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
