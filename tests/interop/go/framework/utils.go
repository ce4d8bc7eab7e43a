// Reproduces the behaviour of safing/portmaster PR #834's plugin/framework/utils.go
// (fallback: the module proxy does not serve the PR).

package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"pmplugins.test/interop/gen/proto"
	"pmplugins.test/interop/shared/decider"
	"pmplugins.test/interop/shared/reporter"
	"pmplugins.test/interop/shared/resolver"
)

// DeciderFunc turns a function into a decider.Decider.
type DeciderFunc func(context.Context, *proto.Connection) (proto.Verdict, string, error)

// DecideOnConnection calls fn.
func (fn DeciderFunc) DecideOnConnection(ctx context.Context, c *proto.Connection) (proto.Verdict, string, error) {
	return fn(ctx, c)
}

// ReporterFunc turns a function into a reporter.Reporter.
type ReporterFunc func(context.Context, *proto.Connection) error

// ReportConnection calls fn.
func (fn ReporterFunc) ReportConnection(ctx context.Context, c *proto.Connection) error {
	return fn(ctx, c)
}

// ResolverFunc turns a function into a resolver.Resolver.
type ResolverFunc func(context.Context, *proto.DNSQuestion, *proto.Connection) (*proto.DNSResponse, error)

// Resolve calls fn.
func (fn ResolverFunc) Resolve(ctx context.Context, q *proto.DNSQuestion, c *proto.Connection) (*proto.DNSResponse, error) {
	return fn(ctx, q, c)
}

// ChainDeciders asks the deciders in order and returns the first error or the
// first verdict other than UNDECIDED and UNDETERMINABLE. VERDICT_FAILED
// without an error still ends the chain with an error.
func ChainDeciders(deciders ...decider.Decider) DeciderFunc {
	return func(ctx context.Context, c *proto.Connection) (proto.Verdict, string, error) {
		for i, d := range deciders {
			verdict, reason, err := d.DecideOnConnection(ctx, c)
			if err != nil {
				return verdict, reason, err
			}
			switch verdict {
			case proto.Verdict_VERDICT_UNDECIDED, proto.Verdict_VERDICT_UNDETERMINABLE:
				continue
			case proto.Verdict_VERDICT_FAILED:
				return verdict, reason, fmt.Errorf("chained decider at index %d return VERDICT_FAILED", i)
			default:
				return verdict, reason, nil
			}
		}
		return proto.Verdict_VERDICT_UNDECIDED, "", nil
	}
}

// ChainDeciderFunc is ChainDeciders for plain functions.
func ChainDeciderFunc(fns ...DeciderFunc) DeciderFunc {
	ds := make([]decider.Decider, 0, len(fns))
	for _, fn := range fns {
		ds = append(ds, fn)
	}
	return ChainDeciders(ds...)
}

var (
	selfOnce     sync.Once
	selfPath     string
	selfResolved string
	selfErr      error
)

// IsSelf reports whether conn was made by this plugin's own executable.
func IsSelf(conn *proto.Connection) (bool, error) {
	selfOnce.Do(func() {
		selfPath, selfErr = os.Executable()
		if selfErr == nil {
			selfResolved, selfErr = filepath.EvalSymlinks(selfPath)
		}
	})
	if selfErr != nil {
		return false, selfErr
	}
	bin := conn.GetProcess().GetBinaryPath()
	return bin == selfPath || bin == selfResolved, nil
}

// AllowPluginConnections accepts the plugin's own connections and leaves
// everything else undecided; put it first in a chain.
func AllowPluginConnections() DeciderFunc {
	return func(_ context.Context, c *proto.Connection) (proto.Verdict, string, error) {
		self, err := IsSelf(c)
		if err != nil {
			return proto.Verdict_VERDICT_UNDECIDED, "", fmt.Errorf("failed to get executable path: %w", err)
		}
		if self {
			return proto.Verdict_VERDICT_ACCEPT, "own plugin connections are allowed", nil
		}
		return proto.Verdict_VERDICT_UNDECIDED, "", nil
	}
}

var (
	_ decider.Decider   = DeciderFunc(nil)
	_ reporter.Reporter = ReporterFunc(nil)
	_ resolver.Resolver = ResolverFunc(nil)
)
