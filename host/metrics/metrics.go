// Package metrics exposes spectroauthd's Prometheus metrics: HTTP requests
// by route, calls to the SpectroCloud provider, the plugins' state and
// calls, and the Go runtime's and the process's own.
//
// Route labels are the patterns the server registered ("GET
// /api/auth/{provider}/refresh"), never raw paths, so a scan of random URLs
// cannot grow the label set; requests no route matched share "unmatched".
// No label ever holds a user, a token or a cookie.
package metrics

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spectroauth/spectroauth/host/pluginhost"
)

// Namespace prefixes every metric of the daemon.
const Namespace = "spectroauth"

// Metrics is the daemon's registry and the metrics it records.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec

	kubeCredentials *prometheus.CounterVec
	signIns         *prometheus.CounterVec
	sessionsEnded   *prometheus.CounterVec
	clientRejected  *prometheus.CounterVec

	configReloads    *prometheus.CounterVec
	configGeneration prometheus.Gauge
	configLoaded     prometheus.Gauge
}

// New returns a registry with the Go runtime and process collectors and the
// daemon's metrics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to serve HTTP requests, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "upstream", Name: "requests_total",
			Help: "Back-channel requests to the SpectroCloud provider (discovery, keys, token, userinfo, revocation), by environment and outcome (2xx, 3xx, 4xx, 5xx or error).",
		}, []string{"env", "outcome"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help:    "Time of back-channel requests to the SpectroCloud provider, by environment.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"env"}),
		kubeCredentials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "kube", Name: "credentials_total",
			Help: "Kubernetes credential requests, by outcome (granted, refused) and refusal reason (as in the audit log).",
		}, []string{"outcome", "reason"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "signins_total",
			Help: "Sign-ins that reached the callback, by environment, client (browser, cli) and outcome (signed-in, refused, failed).",
		}, []string{"env", "client", "outcome"}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sessions_ended_total",
			Help: "Sessions the daemon ended, by environment and reason (refused, resolver-refused, signed-out, signed-out-everywhere, duplicate-cookies).",
		}, []string{"env", "reason"}),
		clientRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "upstream", Name: "client_rejected_total",
			Help: "Refreshes the provider answered invalid_client or unauthorized_client, by environment: the daemon's client id or secret is wrong. Sessions are kept; alert on any increase.",
		}, []string{"env"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "config", Name: "reloads_total",
			Help: "Configuration reloads (SIGHUP, spectroauthd reload), by result: ok, or refused (the configuration did not load, a plugin did not start, or a setting that cannot change live changed; the old configuration serves on).",
		}, []string{"result"}),
		configGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "generation",
			Help: "The configuration generation that serves: 1 at start, one more with every reload that took effect.",
		}),
		configLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "When the serving configuration generation took effect (the start, or the last reload that did), in seconds since the epoch.",
		}),
	}
	for _, result := range []string{ReloadOK, ReloadRefused} {
		m.configReloads.WithLabelValues(result) // both series exist from the start
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.httpDuration, m.upstreamRequests, m.upstreamDuration, m.kubeCredentials, m.signIns, m.sessionsEnded, m.clientRejected,
		m.configReloads, m.configGeneration, m.configLoaded,
	)
	return m
}

// RegisterBuildInfo adds spectroauth_build_info, always 1, whose labels
// say which version and commit run: a dashboard joins on it, an alert sees
// replicas that run different builds.
func (m *Metrics) RegisterBuildInfo(version, commit string) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "The running build: version and commit as stamped at build time (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit},
	}, func() float64 { return 1 })
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("registering the build_info metric: %w", err)
	}
	return nil
}

// Registry is where further collectors register.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text or OpenMetrics format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Middleware records every request next serves by the pattern of the
// route that served it. The route is read after next returns: the
// ServeMux that routed the request sets its Pattern.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		m.httpDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder keeps the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Transport records the requests base makes to the provider of env. A nil
// base is http.DefaultTransport.
func (m *Metrics) Transport(env string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &upstreamTransport{
		base:     base,
		duration: m.upstreamDuration.WithLabelValues(env),
		requests: m.upstreamRequests.MustCurryWith(prometheus.Labels{"env": env}),
	}
}

type upstreamTransport struct {
	base     http.RoundTripper
	duration prometheus.Observer
	requests *prometheus.CounterVec
}

// RoundTrip counts the request. A base that breaks the RoundTripper
// contract by returning neither a response nor an error gets an error
// here, counted as one: reading the status of the missing response would
// panic, and so would the wrappers above this one (host/upstream's body
// limit) that trust the contract.
func (t *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	res, err := t.base.RoundTrip(r)
	t.duration.Observe(time.Since(start).Seconds())
	if err == nil && res == nil {
		err = fmt.Errorf("metrics: %T returned neither a response nor an error", t.base)
	}
	outcome := "error"
	if err == nil {
		outcome = strconv.Itoa(res.StatusCode/100) + "xx"
	}
	t.requests.WithLabelValues(outcome).Inc()
	return res, err
}

// SignInDone counts one sign-in (server.Config.SignInDone).
func (m *Metrics) SignInDone(env, client, outcome string) {
	m.signIns.WithLabelValues(env, client, outcome).Inc()
}

// SessionEnded counts n sessions the daemon ended (server.Config.SessionEnded).
func (m *Metrics) SessionEnded(env, reason string, n int) {
	m.sessionsEnded.WithLabelValues(env, reason).Add(float64(n))
}

// ClientRejected counts one refusal of the daemon's client credentials
// (server.Config.ClientRejected).
func (m *Metrics) ClientRejected(env string) {
	m.clientRejected.WithLabelValues(env).Inc()
}

// KubeCredentialDecided counts one answered credential request. reason is
// one of host/kube's Reason constants (a fixed set), empty for a grant.
func (m *Metrics) KubeCredentialDecided(outcome, reason string) {
	m.kubeCredentials.WithLabelValues(outcome, reason).Inc()
}

// The results of a configuration reload.
const (
	ReloadOK      = "ok"
	ReloadRefused = "refused"
)

// ConfigReloaded counts a reload with result ReloadOK or ReloadRefused.
func (m *Metrics) ConfigReloaded(result string) {
	m.configReloads.WithLabelValues(result).Inc()
}

// ConfigServing records that configuration generation n serves since at.
func (m *Metrics) ConfigServing(n uint64, at time.Time) {
	m.configGeneration.Set(float64(n))
	m.configLoaded.Set(float64(at.UnixNano()) / 1e9)
}

// RegisterPlugins adds the plugins' state and counters, read from status at
// each scrape (nothing is recorded on the call path).
func (m *Metrics) RegisterPlugins(status func() []pluginhost.PluginStatus) error {
	return m.reg.Register(&pluginCollector{status: status})
}

var (
	pluginUpDesc = prometheus.NewDesc(Namespace+"_plugin_up",
		"1 when the plugin is up and takes calls, 0 while it starts, restarts or is stopped.", []string{"plugin", "state"}, nil)
	pluginCallsDesc = prometheus.NewDesc(Namespace+"_plugin_calls_total",
		"Calls made to the plugin.", []string{"plugin"}, nil)
	pluginFailuresDesc = prometheus.NewDesc(Namespace+"_plugin_call_failures_total",
		"Calls to the plugin that failed, \"not found\" answers included.", []string{"plugin"}, nil)
	pluginRestartsDesc = prometheus.NewDesc(Namespace+"_plugin_restarts_total",
		"Restarts of the plugin after a crash or a hang.", []string{"plugin"}, nil)
	pluginLogDroppedDesc = prometheus.NewDesc(Namespace+"_plugin_log_lines_dropped_total",
		"Log lines of the plugin dropped because it logged more than 50 a second (200 at once).", []string{"plugin"}, nil)
)

type pluginCollector struct {
	status func() []pluginhost.PluginStatus
}

func (c *pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pluginUpDesc
	ch <- pluginCallsDesc
	ch <- pluginFailuresDesc
	ch <- pluginRestartsDesc
	ch <- pluginLogDroppedDesc
}

func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.status() {
		up := 0.0
		if p.State == pluginhost.StateUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(pluginUpDesc, prometheus.GaugeValue, up, p.Name, string(p.State))
		ch <- prometheus.MustNewConstMetric(pluginCallsDesc, prometheus.CounterValue, float64(p.Calls), p.Name)
		ch <- prometheus.MustNewConstMetric(pluginFailuresDesc, prometheus.CounterValue, float64(p.Failures), p.Name)
		ch <- prometheus.MustNewConstMetric(pluginRestartsDesc, prometheus.CounterValue, float64(p.Restarts), p.Name)
		ch <- prometheus.MustNewConstMetric(pluginLogDroppedDesc, prometheus.CounterValue, float64(p.LogLinesDropped), p.Name)
	}
}
