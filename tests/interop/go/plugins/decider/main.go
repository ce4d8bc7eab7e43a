// Reproduces the behaviour of safing/portmaster PR #834's example decider plugin, written
// against framework/ (fallback: the module proxy does not serve the PR).

// Command decider lets curl talk to example.com and safing.io and leaves
// every other connection to the next decider.
package main

import (
	"context"
	"log"

	"pmplugins.test/interop/framework"
	"pmplugins.test/interop/gen/proto"
)

var allowedDomains = map[string]bool{
	"example.com.": true,
	"safing.io.":   true,
}

func decide(_ context.Context, conn *proto.Connection) (proto.Verdict, string, error) {
	if conn.GetProcess().GetBinaryPath() == "/usr/bin/curl" && allowedDomains[conn.GetEntity().GetDomain()] {
		return proto.Verdict_VERDICT_ACCEPT, "allowed", nil
	}

	log.Printf("ignoring decision request for %s: %s", conn.Id, conn.GetEntity().GetDomain())

	return proto.Verdict_VERDICT_UNDECIDED, "", nil
}

func main() {
	if err := framework.RegisterDecider(framework.DeciderFunc(decide)); err != nil {
		log.Fatalf("failed to register decider: %s", err)
	}

	framework.Serve()
}
