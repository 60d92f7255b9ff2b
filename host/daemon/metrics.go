package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spectroauth/spectroauth/host/metrics"
)

// serveMetrics starts the metrics listener (server.metricsListen, or l):
// /metrics only, apart from the daemon's routes so that it can be bound
// where only the scraper reaches it.
func (d *Daemon) serveMetrics(l net.Listener) error {
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", d.cfg.Server.MetricsListen); err != nil {
			return fmt.Errorf("listening on server.metricsListen %s: %w", d.cfg.Server.MetricsListen, err)
		}
	}
	d.metrics, d.metricsAddr = metrics.New(), l.Addr()
	if err := d.metrics.RegisterBuildInfo(d.binary.Version, d.binary.Commit); err != nil {
		_ = l.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	d.metricsH = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		if err := d.metricsH.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("the metrics listener stopped", "error", err)
		}
	}()
	d.log.Info("serving metrics", "listen", l.Addr().String(), "path", "/metrics")
	return nil
}

// upstreamClient is base, with the provider calls of env counted when
// metrics are on.
func (d *Daemon) upstreamClient(env string, base *http.Client) *http.Client {
	if d.metrics == nil {
		return base
	}
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.Transport = d.metrics.Transport(env, c.Transport)
	return c
}

// MetricsAddr is the metrics listener's address, or nil when metrics are off.
func (d *Daemon) MetricsAddr() net.Addr { return d.metricsAddr }
