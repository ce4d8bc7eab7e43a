// Reproduces the behaviour of safing/portmaster PR #834's plugin/internal/host_config_server.go,
// event_fanout.go, host_notification_server.go and plugin/loader/plugin_manager_server.go, in
// memory and without portbase (fallback: the module proxy does not serve the PR).

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"pmplugins.test/interop/gen/proto"
	"pmplugins.test/interop/shared/config"
	"pmplugins.test/interop/shared/notification"
	"pmplugins.test/interop/shared/pluginmanager"
)

// ---- configuration ---------------------------------------------------------

type option struct {
	typ   proto.OptionType
	value *proto.Value
}

type subscription struct {
	keys []string
	ch   chan *proto.WatchChangesResponse
}

// configStore is the host's whole configuration: a map of full keys. After
// the first watch subscribes, it changes the watched string values once to
// "changed" and, as the PR's fan-out does, re-sends every watched key of
// every subscription.
type configStore struct {
	rec *recorder

	mu      sync.Mutex
	options map[string]*option
	subs    map[int]*subscription
	nextSub int
	changed bool
}

func newConfigStore(rec *recorder) *configStore {
	return &configStore{
		rec: rec,
		options: map[string]*option{
			// Another plugin's secret, readable by privileged plugins only.
			"plugins/other/secret": {typ: proto.OptionType_OPTION_TYPE_STRING, value: &proto.Value{String_: "s3cret"}},
		},
		subs: map[int]*subscription{},
	}
}

func (s *configStore) lookup(key string) (*option, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	opt, ok := s.options[key]
	if !ok {
		return nil, fmt.Errorf("config option %s does not exist", key)
	}
	return opt, nil
}

func (s *configStore) subscribe(ctx context.Context, keys []string) <-chan *proto.WatchChangesResponse {
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	sub := &subscription{keys: keys, ch: make(chan *proto.WatchChangesResponse, 16)}
	s.subs[id] = sub
	first := !s.changed
	s.changed = true
	s.mu.Unlock()

	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.subs, id)
		close(sub.ch)
		s.mu.Unlock()
	}()

	if first {
		go func() {
			time.Sleep(100 * time.Millisecond)
			s.change(keys, "changed")
		}()
	}
	return sub.ch
}

// change sets the existing string options among keys to value and fans the
// change out.
func (s *configStore) change(keys []string, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if opt, ok := s.options[k]; ok && opt.typ == proto.OptionType_OPTION_TYPE_STRING {
			opt.value = &proto.Value{String_: value}
			s.rec.configChange(k, value)
		}
	}
	for _, sub := range s.subs {
		for _, k := range sub.keys {
			opt, ok := s.options[k]
			if !ok {
				continue
			}
			select {
			case sub.ch <- &proto.WatchChangesResponse{Key: k, Value: opt.value}:
			default:
				s.rec.fail(fmt.Errorf("watch of %s: subscriber queue full, change dropped", k))
			}
		}
	}
}

// hostConfig is one plugin's view of configStore, scoped as the PR scopes it:
// options are created as plugins/<name>/<key>; an unprivileged plugin's
// reads and watches get that prefix too (never refused, only rewritten); a
// privileged plugin reads and watches any full key.
type hostConfig struct {
	store      *configStore
	rec        *recorder
	name       string
	privileged bool
}

func (c *hostConfig) scoped(key string) string {
	if c.privileged {
		return key
	}
	return fmt.Sprintf("plugins/%s/%s", c.name, key)
}

func (c *hostConfig) RegisterOption(_ context.Context, o *proto.Option) error {
	key := fmt.Sprintf("plugins/%s/%s", c.name, o.GetKey())
	def := o.GetDefault()
	if def == nil {
		def = &proto.Value{}
	}
	c.store.mu.Lock()
	if _, exists := c.store.options[key]; !exists {
		c.store.options[key] = &option{typ: o.GetOptionType(), value: def}
	}
	c.store.mu.Unlock()
	c.rec.configRegistered(key, o.GetOptionType(), def)
	return nil
}

func (c *hostConfig) GetValue(_ context.Context, key string) (*proto.Value, error) {
	full := c.scoped(key)
	opt, err := c.store.lookup(full)
	if err != nil {
		c.rec.configRead(key, full, nil, err)
		return nil, err
	}
	c.rec.configRead(key, full, opt, nil)
	return opt.value, nil
}

func (c *hostConfig) WatchValue(ctx context.Context, keys ...string) (<-chan *proto.WatchChangesResponse, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = c.scoped(k)
	}
	c.rec.configWatch(keys, full)
	return c.store.subscribe(ctx, full), nil
}

// ---- notifications -------------------------------------------------------

// hostNotify "shows" a notification; a user picks its first custom action
// (one without action_type) about 100 ms later. Without a custom action the
// stream ends at once, as in the PR.
type hostNotify struct {
	rec *recorder
}

func (n *hostNotify) CreateNotification(ctx context.Context, msg *proto.Notification) (<-chan string, error) {
	custom := ""
	ids := []string{}
	for _, a := range msg.GetActions() {
		ids = append(ids, a.GetId())
		if a.GetActionType() == nil && custom == "" {
			custom = a.GetId()
		}
	}
	idx := n.rec.notification(msg, ids, custom != "")

	picks := make(chan string, 1)
	if custom == "" {
		close(picks)
		return picks, nil
	}
	go func() {
		defer close(picks)
		select {
		case <-time.After(100 * time.Millisecond):
			picks <- custom
			n.rec.notificationAnswered(idx, custom)
		case <-ctx.Done():
		}
	}()
	return picks, nil
}

// ---- plugin manager ------------------------------------------------------

// hostPluginManager lists a fixed set of plugins (the plugin itself among
// them) and records every call; the other calls succeed without effect.
type hostPluginManager struct {
	rec        *recorder
	self       *proto.PluginConfig
	typesQuirk bool
}

func (m *hostPluginManager) ListPlugins(context.Context) ([]*proto.Plugin, error) {
	mk := func(name string, types []string) *proto.Plugin {
		return &proto.Plugin{Config: &proto.PluginConfig{Name: name, PluginTypes: pluginTypesToProto(types, m.typesQuirk)}}
	}
	self := &proto.Plugin{Config: m.self}
	list := []*proto.Plugin{self, mk("hosts", []string{"resolver"}), mk("allowlist", []string{"decider"})}
	names := make([]string, len(list))
	for i, p := range list {
		names[i] = p.GetConfig().GetName()
	}
	m.rec.pluginManager("ListPlugins", "", names)
	return list, nil
}

func (m *hostPluginManager) RegisterPlugin(_ context.Context, cfg *proto.PluginConfig) error {
	m.rec.pluginManager("RegisterPlugin", cfg.GetName(), nil)
	return nil
}

func (m *hostPluginManager) UnregisterPlugin(_ context.Context, name string) error {
	m.rec.pluginManager("UnregisterPlugin", name, nil)
	return nil
}

func (m *hostPluginManager) StopPlugin(_ context.Context, name string) error {
	m.rec.pluginManager("StopPlugin", name, nil)
	return nil
}

func (m *hostPluginManager) StartPlugin(_ context.Context, name string) error {
	m.rec.pluginManager("StartPlugin", name, nil)
	return nil
}

// pluginTypesToProto maps type names to the enum. With quirk set it builds
// the list the way the PR's loader does, behind as many UNKNOWN (0) entries
// as there are types (["decider"] becomes [0, 2]).
func pluginTypesToProto(types []string, quirk bool) []proto.PluginType {
	out := []proto.PluginType{}
	if quirk {
		out = make([]proto.PluginType, len(types))
	}
	for _, t := range types {
		switch t {
		case "base":
			out = append(out, proto.PluginType_PLUGIN_TYPE_BASE)
		case "decider":
			out = append(out, proto.PluginType_PLUGIN_TYPE_DECIDER)
		case "reporter":
			out = append(out, proto.PluginType_PLUGIN_TYPE_REPORTER)
		case "resolver":
			out = append(out, proto.PluginType_PLUGIN_TYPE_RESOLVER)
		}
	}
	return out
}

var (
	_ config.Service        = (*hostConfig)(nil)
	_ notification.Service  = (*hostNotify)(nil)
	_ pluginmanager.Service = (*hostPluginManager)(nil)
)
