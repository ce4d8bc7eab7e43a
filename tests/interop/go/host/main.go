// Reproduces the behaviour of safing/portmaster PR #834's plugin/loader/loader.go and
// plugin/loader/instance.go, without portbase (fallback: the module proxy does not serve the PR).

// Command host starts one plugin the way the PR's loader does (go-plugin
// client, the PR's handshake, gRPC only, the plugin's path as the command),
// configures it with in-memory host services on the broker backchannel, makes
// the calls the command line asks for, shuts it down and prints one JSON
// object on stdout describing everything it saw. See README.md for flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"pmplugins.test/interop/gen/proto"
	"pmplugins.test/interop/shared"
	"pmplugins.test/interop/shared/base"
	"pmplugins.test/interop/shared/decider"
	"pmplugins.test/interop/shared/reporter"
	"pmplugins.test/interop/shared/resolver"
)

// hostVersion is sent as ConfigureRequest.portmaster_version.
const hostVersion = "1.0.0-interop"

const benchWarmup = 200

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	path, name, types, config, basedir string
	privileged, cleanTypes, verbose    bool
	decide, resolve, reportConns       multiFlag
	benchDecide                        int
	wait                               time.Duration
	waitFile                           string
	callTimeout                        time.Duration
}

func parseFlags() *options {
	o := &options{}
	flag.StringVar(&o.path, "plugin", "", "path of the plugin executable (required)")
	flag.StringVar(&o.name, "name", "", "plugin name sent in Configure (default: the file name)")
	flag.StringVar(&o.types, "types", "", "comma-separated plugin types to dispense: decider,reporter,resolver")
	flag.StringVar(&o.config, "config", "", "static config: JSON sent as PluginConfig.static_config")
	flag.BoolVar(&o.privileged, "privileged", false, "configure the plugin as privileged (serves the plugin manager)")
	flag.StringVar(&o.basedir, "basedir", "", "ConfigureRequest.base_directory (default: the working directory)")
	flag.Var(&o.decide, "decide", "'binary|domain': one DecideOnConnection call (repeatable)")
	flag.Var(&o.resolve, "resolve", "'name|qtype': one Resolve call; qtype a number or A, AAAA, TXT, CNAME, ANY (repeatable)")
	flag.Var(&o.reportConns, "report", "'id|domain|verdict': one ReportConnection call (repeatable)")
	flag.IntVar(&o.benchDecide, "bench-decide", 0, "N timed sequential DecideOnConnection calls after 200 warm-up calls")
	flag.DurationVar(&o.wait, "wait", 0, "keep the plugin running this long before shutting it down")
	flag.StringVar(&o.waitFile, "wait-file", "", "end -wait early once this file exists (the services plugin's result)")
	flag.BoolVar(&o.cleanTypes, "clean-types", false, "send plugin_types without the PR's leading UNKNOWN entries")
	flag.DurationVar(&o.callTimeout, "timeout", 2*time.Second, "deadline of each plugin call (the PR gives deciders 2s)")
	flag.BoolVar(&o.verbose, "v", false, "go-plugin's debug log on stderr")
	flag.Parse()
	return o
}

func main() {
	start := time.Now()
	o := parseFlags()
	rec := newRecorder()

	ok := run(o, rec)

	rec.with(func(r *report) { r.ElapsedS = time.Since(start).Seconds() })
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	rec.mu.Lock()
	err := enc.Encode(&rec.r)
	rec.mu.Unlock()
	if err != nil || !ok {
		os.Exit(1)
	}
}

// run returns false when the plugin could not be started or configured.
func run(o *options, rec *recorder) bool {
	if o.path == "" {
		rec.with(func(r *report) { r.Plugin.Types = []string{} })
		rec.fail(errors.New("-plugin is required"))
		return false
	}
	if o.name == "" {
		o.name = filepath.Base(o.path)
	}
	if o.basedir == "" {
		o.basedir, _ = os.Getwd()
	}
	types := []string{}
	rec.with(func(r *report) {
		r.Plugin = pluginInfo{Path: o.path, Name: o.name, Types: types, Privileged: o.privileged}
	})
	for _, t := range strings.Split(o.types, ",") {
		t = strings.TrimSpace(t)
		if t == "" || t == string(shared.PluginTypeBase) {
			continue
		}
		if !shared.IsValidPluginType(shared.PluginType(t)) {
			rec.fail(fmt.Errorf("-types: unknown plugin type %q", t))
			return false
		}
		types = append(types, t)
	}
	var static []byte
	if o.config != "" {
		if !json.Valid([]byte(o.config)) {
			rec.fail(errors.New("-config is not valid JSON"))
			return false
		}
		static = []byte(o.config)
	}
	rec.with(func(r *report) {
		r.Plugin = pluginInfo{Path: o.path, Name: o.name, Types: types, Privileged: o.privileged}
	})

	stderr := &lineSink{rec: rec, dst: func(r *report) *[]string { return &r.Stderr }}
	syncOut := &lineSink{rec: rec, dst: func(r *report) *[]string { return &r.Stdio.Stdout }}
	syncErr := &lineSink{rec: rec, dst: func(r *report) *[]string { return &r.Stdio.Stderr }}
	level := hclog.Warn
	if o.verbose {
		level = hclog.Debug
	}

	// As the PR's loader: the handshake, every known type in the plugin map,
	// gRPC only, and a bare command, so go-plugin passes this process's
	// environment through (PATH included) plus its own variables.
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: shared.Handshake,
		Plugins: plugin.PluginSet{
			"base":     &base.Plugin{},
			"decider":  &decider.Plugin{},
			"reporter": &reporter.Plugin{},
			"resolver": &resolver.Plugin{},
		},
		Cmd:              exec.Command(o.path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Stderr:           stderr,
		SyncStdout:       syncOut,
		SyncStderr:       syncErr,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "host", Output: os.Stderr, Level: level}),
	})
	defer func() {
		client.Kill()
		stderr.flush()
		syncOut.flush()
		syncErr.flush()
		rec.with(func(r *report) { r.Exited = client.Exited() })
	}()

	rpc, err := client.Client()
	if err != nil {
		rec.fail(fmt.Errorf("start plugin: %w", err))
		return false
	}
	rec.with(func(r *report) {
		r.Started = true
		r.Plugin.Protocol = string(client.Protocol())
	})

	raw, err := rpc.Dispense(string(shared.PluginTypeBase))
	if err != nil {
		rec.fail(fmt.Errorf("dispense base: %w", err))
		return false
	}
	b := raw.(base.Base)
	var (
		dec decider.Decider
		rep reporter.Reporter
		res resolver.Resolver
	)
	for _, t := range types {
		raw, err := rpc.Dispense(t)
		if err != nil {
			rec.fail(fmt.Errorf("dispense %s: %w", t, err))
			return false
		}
		switch shared.PluginType(t) {
		case shared.PluginTypeDecider:
			dec = raw.(decider.Decider)
		case shared.PluginTypeReporter:
			rep = raw.(reporter.Reporter)
		case shared.PluginTypeResolver:
			res = raw.(resolver.Resolver)
		}
	}

	cfg := &proto.PluginConfig{
		Name:         o.name,
		PluginTypes:  pluginTypesToProto(types, !o.cleanTypes),
		Privileged:   o.privileged,
		StaticConfig: static,
	}
	store := newConfigStore(rec)
	env := base.Environment{
		Config: &hostConfig{store: store, rec: rec, name: o.name, privileged: o.privileged},
		Notify: &hostNotify{rec: rec},
	}
	if o.privileged {
		env.PluginManager = &hostPluginManager{rec: rec, self: cfg, typesQuirk: !o.cleanTypes}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = b.Configure(ctx, &proto.ConfigureRequest{
		BaseDirectory:     o.basedir,
		Config:            cfg,
		PortmasterVersion: hostVersion,
	}, env)
	cancel()
	if err != nil {
		// The PR's loader kills a plugin whose Configure failed.
		rec.with(func(r *report) { r.ConfigureError = errText(err) })
		return false
	}
	rec.with(func(r *report) { r.Configured = true })

	calls(o, rec, dec, rep, res)

	waitFor(o.wait, o.waitFile)

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	err = b.Shutdown(ctx)
	cancel()
	rec.with(func(r *report) { r.ShutdownError = errText(err) })
	return true
}

// waitFor sleeps for d, or less once path (when given) exists.
func waitFor(d time.Duration, path string) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if path != "" {
			if _, err := os.Stat(path); err == nil {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func split(spec string, n int, flagName string) ([]string, error) {
	parts := strings.Split(spec, "|")
	if len(parts) != n {
		return nil, fmt.Errorf("-%s %q: want %d fields separated by |", flagName, spec, n)
	}
	return parts, nil
}

func connection(id, binary, domain string) *proto.Connection {
	return &proto.Connection{
		Id:         id,
		Type:       proto.ConnectionType_CONNECTION_TYPE_IP,
		External:   true,
		IpVersion:  proto.IPVersion_IP_VERSION_4,
		IpProtocol: 6,
		LocalIp:    "192.0.2.1",
		LocalPort:  40000,
		Started:    uint64(time.Now().Unix()),
		Entity: &proto.IntelEntity{
			Protocol: 6, Port: 443, Domain: domain, Ip: "198.51.100.7",
			Scope: proto.IPScope_IP_SCOPE_GLOBAL,
		},
		Process: &proto.ProcessContext{
			Name: filepath.Base(binary), BinaryPath: binary, ProcessId: 4242,
		},
	}
}

func parseVerdict(s string) (proto.Verdict, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return proto.Verdict(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "VERDICT_") {
		name = "VERDICT_" + name
	}
	if v, ok := proto.Verdict_value[name]; ok {
		return proto.Verdict(v), nil
	}
	return 0, fmt.Errorf("unknown verdict %q", s)
}

var qtypes = map[string]uint32{"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}

func parseQtype(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint32(n), nil
	}
	if t, ok := qtypes[strings.ToUpper(s)]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("unknown qtype %q", s)
}

func calls(o *options, rec *recorder, dec decider.Decider, rep reporter.Reporter, res resolver.Resolver) {
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), o.callTimeout)
	}

	for i, spec := range o.decide {
		parts, err := split(spec, 2, "decide")
		if err == nil && dec == nil {
			err = errors.New("-decide needs -types decider")
		}
		if err != nil {
			rec.fail(err)
			continue
		}
		id := fmt.Sprintf("conn-%d", i+1)
		ctx, cancel := call()
		verdict, reason, err := dec.DecideOnConnection(ctx, connection(id, parts[0], parts[1]))
		cancel()
		rec.with(func(r *report) {
			r.Decisions = append(r.Decisions, decisionResult{
				ID: id, Binary: parts[0], Domain: parts[1],
				Verdict: verdict.String(), Reason: reason, Error: errText(err),
			})
		})
	}

	for _, spec := range o.resolve {
		parts, err := split(spec, 2, "resolve")
		var qtype uint32
		if err == nil {
			qtype, err = parseQtype(parts[1])
		}
		if err == nil && res == nil {
			err = errors.New("-resolve needs -types resolver")
		}
		if err != nil {
			rec.fail(err)
			continue
		}
		ctx, cancel := call()
		answer, err := res.Resolve(ctx,
			&proto.DNSQuestion{Name: parts[0], Type: qtype, Class: 1},
			connection("dns-"+parts[0], "/usr/bin/resolvectl", parts[0]))
		cancel()
		out := resolveResult{Name: parts[0], Qtype: qtype, Records: []record{}, Error: errText(err)}
		if err == nil && answer != nil {
			rcode := answer.GetRcode()
			out.Handled, out.Rcode, out.Records = true, &rcode, recordsJSON(answer.GetRrs())
		}
		rec.with(func(r *report) { r.Resolves = append(r.Resolves, out) })
	}

	for _, spec := range o.reportConns {
		parts, err := split(spec, 3, "report")
		var verdict proto.Verdict
		if err == nil {
			verdict, err = parseVerdict(parts[2])
		}
		if err == nil && rep == nil {
			err = errors.New("-report needs -types reporter")
		}
		if err != nil {
			rec.fail(err)
			continue
		}
		conn := connection(parts[0], "/usr/bin/curl", parts[1])
		conn.Verdict = verdict
		ctx, cancel := call()
		err = rep.ReportConnection(ctx, conn)
		cancel()
		rec.with(func(r *report) {
			r.Reports = append(r.Reports, reportResult{
				ID: parts[0], Domain: parts[1], Verdict: verdict.String(), Error: errText(err),
			})
		})
	}

	if o.benchDecide > 0 {
		if dec == nil {
			rec.fail(errors.New("-bench-decide needs -types decider"))
			return
		}
		rec.with(func(r *report) { r.Bench = bench(dec, o.benchDecide, o.callTimeout) })
	}
}

// bench times n sequential decisions on one fixed connection after a warm-up.
func bench(dec decider.Decider, n int, timeout time.Duration) *benchResult {
	conn := connection("bench", "/usr/bin/curl", "example.com.")
	once := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		t0 := time.Now()
		_, _, err := dec.DecideOnConnection(ctx, conn)
		return time.Since(t0), err
	}
	out := &benchResult{N: n, Warmup: benchWarmup}
	for i := 0; i < benchWarmup; i++ {
		if _, err := once(); err != nil {
			out.Errors++
		}
	}
	samples := make([]float64, 0, n)
	var total float64
	for i := 0; i < n; i++ {
		d, err := once()
		if err != nil {
			out.Errors++
		}
		us := float64(d.Nanoseconds()) / 1e3
		samples = append(samples, us)
		total += us
	}
	sort.Float64s(samples)
	rank := func(p float64) float64 { // nearest-rank percentile
		i := int(math.Ceil(p*float64(n))) - 1
		if i < 0 {
			i = 0
		}
		if i >= n {
			i = n - 1
		}
		return samples[i]
	}
	round := func(v float64) float64 { return math.Round(v*10) / 10 }
	out.P50US, out.P99US, out.MeanUS = round(rank(0.50)), round(rank(0.99)), round(total/float64(n))
	return out
}
