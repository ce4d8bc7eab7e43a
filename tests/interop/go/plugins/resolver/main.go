// Reproduces the behaviour of a resolver plugin written against safing/portmaster PR #834's
// plugin/framework (fallback: the module proxy does not serve the PR).

// Command resolver answers for interop.example. and leaves every other name
// to the host's next resolver.
package main

import (
	"context"
	"log"
	"net"
	"strings"

	"pmplugins.test/interop/framework"
	"pmplugins.test/interop/gen/proto"
)

const (
	zone = "interop.example."

	typeA    = 1
	typeTXT  = 16
	typeAAAA = 28
	typeANY  = 255

	classINET = 1
	ttl       = 60
)

func records(qtype uint32) []*proto.DNSRR {
	rr := func(t uint32, data []byte) *proto.DNSRR {
		return &proto.DNSRR{Name: zone, Type: t, Class: classINET, Ttl: ttl, Data: data}
	}
	a := rr(typeA, net.ParseIP("192.0.2.10").To4())
	aaaa := rr(typeAAAA, net.ParseIP("2001:db8::10").To16())
	txt := rr(typeTXT, []byte("hello from go"))

	switch qtype {
	case typeA:
		return []*proto.DNSRR{a}
	case typeAAAA:
		return []*proto.DNSRR{aaaa}
	case typeTXT:
		return []*proto.DNSRR{txt}
	case typeANY:
		return []*proto.DNSRR{a, aaaa, txt}
	}
	// Other types: the name exists, so NOERROR without answers.
	return nil
}

func resolve(_ context.Context, q *proto.DNSQuestion, _ *proto.Connection) (*proto.DNSResponse, error) {
	if !strings.EqualFold(q.GetName(), zone) {
		// nil: not handled, ask the next resolver.
		return nil, nil
	}
	return &proto.DNSResponse{Rcode: 0, Rrs: records(q.GetType())}, nil
}

func main() {
	if err := framework.RegisterResolver(framework.ResolverFunc(resolve)); err != nil {
		log.Fatalf("failed to register resolver: %s", err)
	}

	framework.Serve()
}
