// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/reporter/reporter_interface.go
// and reporter_grpc.go (fallback: the module proxy does not serve the PR).

// Package reporter is the "reporter" plugin type: the host hands over each
// connection with its final verdict and expects nothing back.
package reporter

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"pmplugins.test/interop/gen/proto"
)

// Reporter receives decided connections.
type Reporter interface {
	ReportConnection(ctx context.Context, conn *proto.Connection) error
}

// Plugin is the go-plugin glue for the reporter type.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Impl is used on the plugin side only.
	Impl Reporter
}

// GRPCServer registers ReporterService on the plugin's server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterReporterServiceServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Reporter that calls the plugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &grpcClient{client: proto.NewReporterServiceClient(c)}, nil
}

type grpcClient struct {
	client proto.ReporterServiceClient
}

func (c *grpcClient) ReportConnection(ctx context.Context, conn *proto.Connection) error {
	_, err := c.client.ReportConnection(ctx, &proto.ReportConnectionRequest{Connection: conn})
	return err
}

type grpcServer struct {
	proto.UnimplementedReporterServiceServer

	impl Reporter
}

// ReportConnection answers with the PR's (misspelt) response message.
func (s *grpcServer) ReportConnection(ctx context.Context, req *proto.ReportConnectionRequest) (*proto.ReportConnectionRespose, error) {
	if err := s.impl.ReportConnection(ctx, req.GetConnection()); err != nil {
		return nil, err
	}
	return &proto.ReportConnectionRespose{}, nil
}

var (
	_ plugin.GRPCPlugin           = (*Plugin)(nil)
	_ Reporter                    = (*grpcClient)(nil)
	_ proto.ReporterServiceServer = (*grpcServer)(nil)
)
