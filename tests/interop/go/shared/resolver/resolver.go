// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/resolver/resolver_interface.go
// and resolver_grpc.go (fallback: the module proxy does not serve the PR).

// Package resolver is the "resolver" plugin type: a DNS question in; an
// answer, or nil for "not handled", out.
package resolver

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"pmplugins.test/interop/gen/proto"
)

// Resolver answers DNS questions. A nil response with a nil error means
// "not handled": the host asks its next resolver.
type Resolver interface {
	Resolve(ctx context.Context, question *proto.DNSQuestion, conn *proto.Connection) (*proto.DNSResponse, error)
}

// Plugin is the go-plugin glue for the resolver type.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Impl is used on the plugin side only.
	Impl Resolver
}

// GRPCServer registers ResolverService on the plugin's server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterResolverServiceServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Resolver that calls the plugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &grpcClient{client: proto.NewResolverServiceClient(c)}, nil
}

type grpcClient struct {
	client proto.ResolverServiceClient
}

// Resolve returns nil when the reply's response field is absent.
func (c *grpcClient) Resolve(ctx context.Context, q *proto.DNSQuestion, conn *proto.Connection) (*proto.DNSResponse, error) {
	res, err := c.client.Resolve(ctx, &proto.ResolveRequest{Question: q, Connection: conn})
	if err != nil {
		return nil, err
	}
	return res.GetResponse(), nil
}

type grpcServer struct {
	proto.UnimplementedResolverServiceServer

	impl Resolver
}

// Resolve wraps the answer as is: a nil answer leaves field 1 absent.
func (s *grpcServer) Resolve(ctx context.Context, req *proto.ResolveRequest) (*proto.ResolveResponse, error) {
	answer, err := s.impl.Resolve(ctx, req.GetQuestion(), req.GetConnection())
	if err != nil {
		return nil, err
	}
	return &proto.ResolveResponse{Response: answer}, nil
}

var (
	_ plugin.GRPCPlugin           = (*Plugin)(nil)
	_ Resolver                    = (*grpcClient)(nil)
	_ proto.ResolverServiceServer = (*grpcServer)(nil)
)
