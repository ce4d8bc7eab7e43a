// Reproduces the behaviour of safing/portmaster PR #834's plugin/framework/framework.go
// (fallback: the module proxy does not serve the PR).

// Package framework is what a plugin author imports: register the plugin
// types you implement, add init/shutdown hooks, call Serve. The "base" type,
// the handshake and the host services are taken care of.
package framework

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-plugin"

	"pmplugins.test/interop/shared"
	"pmplugins.test/interop/shared/base"
	"pmplugins.test/interop/shared/config"
	"pmplugins.test/interop/shared/decider"
	"pmplugins.test/interop/shared/notification"
	"pmplugins.test/interop/shared/pluginmanager"
	"pmplugins.test/interop/shared/reporter"
	"pmplugins.test/interop/shared/resolver"
)

var (
	// ErrPluginTypeRegistered: a plugin type may be registered once.
	ErrPluginTypeRegistered = errors.New("plugin type already registered")
	// ErrNoStaticConfig: plugins.json gave this plugin no "config".
	ErrNoStaticConfig = errors.New("no static configuration available")
)

// Plugin is one plugin process: the base type plus whatever was registered.
type Plugin struct {
	BasePlugin

	types plugin.PluginSet
}

func (p *Plugin) register(pt shared.PluginType, impl plugin.Plugin) error {
	if _, taken := p.types[string(pt)]; taken {
		return fmt.Errorf("%s: %w", pt, ErrPluginTypeRegistered)
	}
	if p.types == nil {
		p.types = plugin.PluginSet{}
	}
	p.types[string(pt)] = impl
	return nil
}

// RegisterDecider offers d as the "decider" type. Not safe for concurrent use;
// a second call fails with ErrPluginTypeRegistered (use ChainDeciders).
func (p *Plugin) RegisterDecider(d decider.Decider) error {
	return p.register(shared.PluginTypeDecider, &decider.Plugin{Impl: d})
}

// RegisterReporter offers r as the "reporter" type.
func (p *Plugin) RegisterReporter(r reporter.Reporter) error {
	return p.register(shared.PluginTypeReporter, &reporter.Plugin{Impl: r})
}

// RegisterResolver offers r as the "resolver" type.
func (p *Plugin) RegisterResolver(r resolver.Resolver) error {
	return p.register(shared.PluginTypeResolver, &resolver.Plugin{Impl: r})
}

// Serve hands the plugin to go-plugin and blocks for the life of the
// process. Register the types first.
func (p *Plugin) Serve() {
	set := plugin.PluginSet{}
	for name, impl := range p.types {
		set[name] = impl
	}
	set[string(shared.PluginTypeBase)] = &base.Plugin{Impl: &p.BasePlugin}

	p.baseCtx, p.cancel = context.WithCancel(context.Background())

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         set,
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// Default is the plugin the package-level functions act on.
var Default = new(Plugin)

// RegisterDecider registers d on Default.
func RegisterDecider(d decider.Decider) error { return Default.RegisterDecider(d) }

// RegisterReporter registers r on Default.
func RegisterReporter(r reporter.Reporter) error { return Default.RegisterReporter(r) }

// RegisterResolver registers r on Default.
func RegisterResolver(r resolver.Resolver) error { return Default.RegisterResolver(r) }

// Serve serves Default.
func Serve() { Default.Serve() }

// OnInit adds a hook that runs inside the host's Configure call; its error
// becomes Configure's error.
func OnInit(fn func(context.Context) error) { Default.OnInit(fn) }

// OnShutdown adds a hook that runs when the host asks the plugin to stop.
func OnShutdown(fn func(context.Context) error) { Default.OnShutdown(fn) }

// BaseDirectory is the host's base directory, known after Configure.
func BaseDirectory() string { return Default.BaseDirectory() }

// PluginName is the name the host gave this plugin, known after Configure.
func PluginName() string { return Default.PluginName() }

// ParseStaticConfig decodes the plugins.json "config" value into receiver.
func ParseStaticConfig(receiver interface{}) error { return Default.ParseStaticConfig(receiver) }

// HasStaticConfig reports whether plugins.json gave this plugin a "config".
func HasStaticConfig() bool { return Default.GetConfig().GetStaticConfig() != nil }

// Config is the host's configuration service.
func Config() config.Service { return Default.Environment.Config }

// Notify is the host's notification service.
func Notify() notification.Service { return Default.Environment.Notify }

// PluginManager is the host's plugin manager; nil unless the plugin runs
// privileged.
func PluginManager() pluginmanager.Service { return Default.Environment.PluginManager }

// PortmasterVersion is the host's version string from Configure.
func PortmasterVersion() string { return Default.GetPortmasterVersion() }

// Context is cancelled when the host asks the plugin to shut down.
func Context() context.Context { return Default.Context() }
