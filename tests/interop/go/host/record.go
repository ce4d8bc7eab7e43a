// Reproduces the behaviour of safing/portmaster PR #834's plugin/loader/instance.go error
// bookkeeping, as a JSON report for tests (fallback: the module proxy does not serve the PR).

package main

import (
	"bytes"
	"encoding/hex"
	"sync"

	"pmplugins.test/interop/gen/proto"
)

// The JSON report the host prints on stdout. Every list is present (maybe
// empty); optional values are null when absent. See README.md.
type report struct {
	Plugin         pluginInfo         `json:"plugin"`
	Started        bool               `json:"started"`
	Configured     bool               `json:"configured"`
	ConfigureError *string            `json:"configure_error"`
	Decisions      []decisionResult   `json:"decisions"`
	Resolves       []resolveResult    `json:"resolves"`
	Reports        []reportResult     `json:"reports"`
	Bench          *benchResult       `json:"bench"`
	Config         configLog          `json:"config"`
	Notifications  []notificationLog  `json:"notifications"`
	PluginManager  []pluginManagerLog `json:"plugin_manager"`
	ShutdownError  *string            `json:"shutdown_error"`
	Exited         bool               `json:"exited"`
	Stderr         []string           `json:"stderr"`
	Stdio          stdioLog           `json:"stdio"`
	Errors         []string           `json:"errors"`
	ElapsedS       float64            `json:"elapsed_s"`
}

type pluginInfo struct {
	Path       string   `json:"path"`
	Name       string   `json:"name"`
	Types      []string `json:"types"`
	Privileged bool     `json:"privileged"`
	Protocol   string   `json:"protocol"`
}

type decisionResult struct {
	ID      string  `json:"id"`
	Binary  string  `json:"binary"`
	Domain  string  `json:"domain"`
	Verdict string  `json:"verdict"`
	Reason  string  `json:"reason"`
	Error   *string `json:"error"`
}

type record struct {
	Name    string `json:"name"`
	Type    uint32 `json:"type"`
	Class   uint32 `json:"class"`
	TTL     uint32 `json:"ttl"`
	DataHex string `json:"data_hex"`
}

type resolveResult struct {
	Name    string   `json:"name"`
	Qtype   uint32   `json:"qtype"`
	Handled bool     `json:"handled"`
	Rcode   *uint32  `json:"rcode"`
	Records []record `json:"records"`
	Error   *string  `json:"error"`
}

type reportResult struct {
	ID      string  `json:"id"`
	Domain  string  `json:"domain"`
	Verdict string  `json:"verdict"`
	Error   *string `json:"error"`
}

type benchResult struct {
	N      int     `json:"n"`
	Warmup int     `json:"warmup"`
	P50US  float64 `json:"p50_us"`
	P99US  float64 `json:"p99_us"`
	MeanUS float64 `json:"mean_us"`
	Errors int     `json:"errors"`
}

type configLog struct {
	Registered []registeredOption `json:"registered"`
	Reads      []configRead       `json:"reads"`
	Watches    []configWatch      `json:"watches"`
	Changes    []configChange     `json:"changes"`
}

type registeredOption struct {
	Key     string      `json:"key"`
	Type    string      `json:"type"`
	Default interface{} `json:"default"`
}

type configRead struct {
	Requested string      `json:"requested"`
	Key       string      `json:"key"`
	Value     interface{} `json:"value"`
	Error     *string     `json:"error"`
}

type configWatch struct {
	Requested []string `json:"requested"`
	Keys      []string `json:"keys"`
}

type configChange struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type notificationLog struct {
	EventID  string   `json:"event_id"`
	Title    string   `json:"title"`
	Actions  []string `json:"actions"`
	Custom   bool     `json:"custom"`
	Answered *string  `json:"answered"`
}

type pluginManagerLog struct {
	Call    string   `json:"call"`
	Name    string   `json:"name,omitempty"`
	Plugins []string `json:"plugins,omitempty"`
}

type stdioLog struct {
	Stdout []string `json:"stdout"`
	Stderr []string `json:"stderr"`
}

// recorder collects, under one lock, what the host services saw; the host
// services run on the broker's gRPC goroutines.
type recorder struct {
	mu sync.Mutex
	r  report
}

func newRecorder() *recorder {
	rec := &recorder{}
	rec.r.Decisions = []decisionResult{}
	rec.r.Resolves = []resolveResult{}
	rec.r.Reports = []reportResult{}
	rec.r.Config = configLog{
		Registered: []registeredOption{},
		Reads:      []configRead{},
		Watches:    []configWatch{},
		Changes:    []configChange{},
	}
	rec.r.Notifications = []notificationLog{}
	rec.r.PluginManager = []pluginManagerLog{}
	rec.r.Stderr = []string{}
	rec.r.Stdio = stdioLog{Stdout: []string{}, Stderr: []string{}}
	rec.r.Errors = []string{}
	return rec
}

func (rec *recorder) with(fn func(r *report)) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	fn(&rec.r)
}

func (rec *recorder) fail(err error) {
	rec.with(func(r *report) { r.Errors = append(r.Errors, err.Error()) })
}

func (rec *recorder) configRegistered(key string, t proto.OptionType, def *proto.Value) {
	rec.with(func(r *report) {
		r.Config.Registered = append(r.Config.Registered, registeredOption{Key: key, Type: t.String(), Default: valueJSON(t, def)})
	})
}

func (rec *recorder) configRead(requested, key string, opt *option, err error) {
	rec.with(func(r *report) {
		entry := configRead{Requested: requested, Key: key}
		if err != nil {
			entry.Error = errText(err)
		} else {
			entry.Value = valueJSON(opt.typ, opt.value)
		}
		r.Config.Reads = append(r.Config.Reads, entry)
	})
}

func (rec *recorder) configWatch(requested, keys []string) {
	rec.with(func(r *report) {
		r.Config.Watches = append(r.Config.Watches, configWatch{Requested: requested, Keys: keys})
	})
}

func (rec *recorder) configChange(key, value string) {
	rec.with(func(r *report) { r.Config.Changes = append(r.Config.Changes, configChange{Key: key, Value: value}) })
}

func (rec *recorder) notification(n *proto.Notification, ids []string, custom bool) (idx int) {
	rec.with(func(r *report) {
		idx = len(r.Notifications)
		r.Notifications = append(r.Notifications, notificationLog{
			EventID: n.GetEventId(), Title: n.GetTitle(), Actions: ids, Custom: custom,
		})
	})
	return idx
}

func (rec *recorder) notificationAnswered(idx int, id string) {
	rec.with(func(r *report) { r.Notifications[idx].Answered = &id })
}

func (rec *recorder) pluginManager(call, name string, plugins []string) {
	rec.with(func(r *report) {
		r.PluginManager = append(r.PluginManager, pluginManagerLog{Call: call, Name: name, Plugins: plugins})
	})
}

// valueJSON renders a config value by its option type.
func valueJSON(t proto.OptionType, v *proto.Value) interface{} {
	switch t {
	case proto.OptionType_OPTION_TYPE_STRING:
		return v.GetString_()
	case proto.OptionType_OPTION_TYPE_INT:
		return v.GetInt()
	case proto.OptionType_OPTION_TYPE_BOOL:
		return v.GetBool()
	case proto.OptionType_OPTION_TYPE_STRING_ARRAY:
		if v.GetStringArray() == nil {
			return []string{}
		}
		return v.GetStringArray()
	}
	return map[string]interface{}{
		"int": v.GetInt(), "bool": v.GetBool(), "float": v.GetFloat(),
		"string": v.GetString_(), "string_array": v.GetStringArray(),
	}
}

func errText(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

func recordsJSON(rrs []*proto.DNSRR) []record {
	out := make([]record, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, record{
			Name: rr.GetName(), Type: rr.GetType(), Class: rr.GetClass(), TTL: rr.GetTtl(),
			DataHex: hex.EncodeToString(rr.GetData()),
		})
	}
	return out
}

// lineSink turns writes into lines appended to *dst (under the recorder's
// lock), keeping at most maxLines lines of at most maxLine bytes each.
type lineSink struct {
	rec     *recorder
	dst     func(r *report) *[]string
	partial bytes.Buffer
}

const (
	maxLines = 2000
	maxLine  = 4096
)

func (s *lineSink) Write(p []byte) (int, error) {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	dst := s.dst(&s.rec.r)
	for _, b := range p {
		if b == '\n' {
			s.emit(dst)
			continue
		}
		if s.partial.Len() < maxLine {
			s.partial.WriteByte(b)
		}
	}
	return len(p), nil
}

func (s *lineSink) emit(dst *[]string) {
	if len(*dst) < maxLines {
		*dst = append(*dst, s.partial.String())
	}
	s.partial.Reset()
}

// flush emits an unterminated last line.
func (s *lineSink) flush() {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	if s.partial.Len() > 0 {
		s.emit(s.dst(&s.rec.r))
	}
}
