// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/decider/decider_interface.go
// and decider_grpc.go (fallback: the module proxy does not serve the PR).

// Package decider is the "decider" plugin type: one connection in, one
// verdict and reason out.
package decider

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"pmplugins.test/interop/gen/proto"
)

// Decider decides on a connection.
type Decider interface {
	DecideOnConnection(ctx context.Context, conn *proto.Connection) (proto.Verdict, string, error)
}

// Plugin is the go-plugin glue for the decider type.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Impl is used on the plugin side only.
	Impl Decider
}

// GRPCServer registers DeciderService on the plugin's server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterDeciderServiceServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Decider that calls the plugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &grpcClient{client: proto.NewDeciderServiceClient(c)}, nil
}

type grpcClient struct {
	client proto.DeciderServiceClient
}

// DecideOnConnection reports VERDICT_FAILED with the error when the call fails.
func (c *grpcClient) DecideOnConnection(ctx context.Context, conn *proto.Connection) (proto.Verdict, string, error) {
	res, err := c.client.DecideOnConnection(ctx, &proto.DecideOnConnectionRequest{Connection: conn})
	if err != nil {
		return proto.Verdict_VERDICT_FAILED, "", err
	}
	return res.GetVerdict(), res.GetReason(), nil
}

type grpcServer struct {
	proto.UnimplementedDeciderServiceServer

	impl Decider
}

func (s *grpcServer) DecideOnConnection(ctx context.Context, req *proto.DecideOnConnectionRequest) (*proto.DecideOnConnectionResponse, error) {
	verdict, reason, err := s.impl.DecideOnConnection(ctx, req.GetConnection())
	if err != nil {
		return nil, err
	}
	return &proto.DecideOnConnectionResponse{Verdict: verdict, Reason: reason}, nil
}

var (
	_ plugin.GRPCPlugin          = (*Plugin)(nil)
	_ Decider                    = (*grpcClient)(nil)
	_ proto.DeciderServiceServer = (*grpcServer)(nil)
)
