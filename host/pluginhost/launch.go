package pluginhost

import (
	"context"
	"fmt"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// Launch starts one plugin, name, of cfg exactly as Start starts a plugin of
// the daemon (the binary verified against cfg.SHA256 and run from its sealed
// copy, in its sandbox and working directory, with only cfg.Env, over
// go-plugin's handshake with mutual TLS and the protocol's limits), and
// returns a client of it, described but not configured: for
// `spectroauthd plugin test`, whose conformance suite configures it itself.
// The plugin is not supervised (no health checks, no restart); stop ends it.
// opts.Logger receives its log lines, as Start's does.
func Launch(ctx context.Context, name string, cfg config.Plugin, opts Options) (c *pluginclient.Client, stop func(), err error) {
	opts.setDefaults()
	h := newHost(opts, []string{name})
	h.isolate()
	in := newInstance(h, name, cfg)
	in.unconfigured = true
	h.plugins[name] = in
	var bins binaries
	if err := in.start(ctx, nil, &bins); err != nil {
		in.abort()
		return nil, nil, err
	}
	in.mu.Lock()
	g := in.last
	in.mu.Unlock()
	if g == nil {
		in.abort()
		return nil, nil, fmt.Errorf("plugins.%s: started, but no process is running", name)
	}
	return g.client, in.abort, nil
}
