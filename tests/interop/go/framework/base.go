// Reproduces the behaviour of safing/portmaster PR #834's plugin/framework/base.go
// (fallback: the module proxy does not serve the PR).

package framework

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"time"

	"pmplugins.test/interop/gen/proto"
	"pmplugins.test/interop/shared/base"
)

// BasePlugin implements base.Base for every framework plugin: it keeps the
// Configure request and the host services, and runs the hooks.
type BasePlugin struct {
	base.Environment
	*proto.ConfigureRequest

	baseCtx context.Context
	cancel  context.CancelFunc

	initHooks     []func(context.Context) error
	shutdownHooks []func(context.Context) error
}

// Configure stores req and env, then runs the init hooks in order; the
// first error aborts and is returned to the host.
func (b *BasePlugin) Configure(ctx context.Context, req *proto.ConfigureRequest, env base.Environment) error {
	log.Println("[DEBUG] configuration request received")

	b.ConfigureRequest = req
	b.Environment = env

	for _, hook := range b.initHooks {
		if err := hook(ctx); err != nil {
			log.Printf("[ERROR] on-init error occurred: %s", err)
			return err
		}
	}
	return nil
}

// Shutdown runs the shutdown hooks (the first error is returned and the
// process stays up), cancels Context() and ends the process a second later,
// so the reply still reaches the host.
func (b *BasePlugin) Shutdown(ctx context.Context) error {
	log.Println("[DEBUG] shutdown request received")

	for _, hook := range b.shutdownHooks {
		if err := hook(ctx); err != nil {
			return err
		}
	}
	if b.cancel != nil {
		b.cancel()
	}

	go func() {
		time.Sleep(time.Second)
		os.Exit(0)
	}()
	return nil
}

// BaseDirectory is the host's base directory.
func (b *BasePlugin) BaseDirectory() string { return b.ConfigureRequest.GetBaseDirectory() }

// PluginName is the name the host gave this plugin.
func (b *BasePlugin) PluginName() string { return b.ConfigureRequest.GetConfig().GetName() }

// Context is cancelled on shutdown.
func (b *BasePlugin) Context() context.Context { return b.baseCtx }

// ParseStaticConfig decodes the static configuration JSON into receiver, or
// returns ErrNoStaticConfig when there is none.
func (b *BasePlugin) ParseStaticConfig(receiver interface{}) error {
	raw := b.ConfigureRequest.GetConfig().GetStaticConfig()
	if len(raw) == 0 {
		return ErrNoStaticConfig
	}
	return json.Unmarshal(raw, receiver)
}

// OnInit adds an init hook.
func (b *BasePlugin) OnInit(fn func(context.Context) error) { b.initHooks = append(b.initHooks, fn) }

// OnShutdown adds a shutdown hook.
func (b *BasePlugin) OnShutdown(fn func(context.Context) error) {
	b.shutdownHooks = append(b.shutdownHooks, fn)
}

var _ base.Base = (*BasePlugin)(nil)
