// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/handshake.go
// and plugin/shared/plugin_types.go (fallback: the module proxy does not serve the PR).

// Package shared holds what plugin and host must agree on before any RPC:
// the go-plugin handshake and the names of the plugin types.
package shared

import "github.com/hashicorp/go-plugin"

// Handshake is the go-plugin handshake both sides use. A plugin started
// without PORTMASTER_PLUGIN=hello refuses to run.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PORTMASTER_PLUGIN",
	MagicCookieValue: "hello",
}

// PluginType names one kind of service a plugin offers; it is the key in
// go-plugin's plugin set.
type PluginType string

// The plugin types the PR knows. Every plugin serves PluginTypeBase.
const (
	PluginTypeBase     PluginType = "base"
	PluginTypeDecider  PluginType = "decider"
	PluginTypeReporter PluginType = "reporter"
	PluginTypeResolver PluginType = "resolver"
)

// IsValidPluginType reports whether pt is one of the known types.
func IsValidPluginType(pt PluginType) bool {
	switch pt {
	case PluginTypeBase, PluginTypeDecider, PluginTypeReporter, PluginTypeResolver:
		return true
	}
	return false
}
