// Package metrics owns mcpgate's Prometheus collectors, on a private
// registry served only on the metrics address.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of collectors.
type Metrics struct {
	Registry      *prometheus.Registry
	Requests      *prometheus.CounterVec   // route, code
	Latency       *prometheus.HistogramVec // route
	AuthDecisions *prometheus.CounterVec   // method, outcome, reason
	ToolCalls     *prometheus.CounterVec   // tool, outcome
}

// New registers every collector on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mcpgate_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		AuthDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_auth_decisions_total", Help: "Authentication decisions by method, outcome and reason.",
		}, []string{"method", "outcome", "reason"}),
		ToolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_tool_calls_total", Help: "MCP tool calls by tool and outcome (allow, deny, error).",
		}, []string{"tool", "outcome"}),
	}
	m.Registry.MustRegister(m.Requests, m.Latency, m.AuthDecisions, m.ToolCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// ObserveRequest records one finished HTTP request.
func (m *Metrics) ObserveRequest(route string, code int, d time.Duration) {
	m.Requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.Latency.WithLabelValues(route).Observe(d.Seconds())
}
