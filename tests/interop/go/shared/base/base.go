// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/base/base_interface.go
// and base_grpc.go (fallback: the module proxy does not serve the PR).

// Package base is the "base" plugin type every plugin serves: Configure once
// after start (which also wires up the host services over a go-plugin broker
// connection), Shutdown once at the end.
package base

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"pmplugins.test/interop/gen/proto"
	"pmplugins.test/interop/shared/config"
	"pmplugins.test/interop/shared/notification"
	"pmplugins.test/interop/shared/pluginmanager"
)

// Environment is the set of host services a plugin can use. PluginManager is
// nil for an unprivileged plugin.
type Environment struct {
	Config        config.Service
	Notify        notification.Service
	PluginManager pluginmanager.Service
}

// Base configures a plugin and ends it.
type Base interface {
	Configure(ctx context.Context, req *proto.ConfigureRequest, env Environment) error
	Shutdown(ctx context.Context) error
}

// Plugin is the go-plugin glue for the base type.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Impl is used on the plugin side only.
	Impl Base
}

// GRPCServer registers BaseService on the plugin's server; the server keeps
// the broker to reach the host's backchannel during Configure.
func (p *Plugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterBaseServiceServer(s, &grpcServer{impl: p.Impl, broker: broker})
	return nil
}

// GRPCClient returns the host's Base; its Configure serves env to the plugin.
func (p *Plugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &grpcClient{client: proto.NewBaseServiceClient(c), broker: broker}, nil
}

type grpcClient struct {
	client proto.BaseServiceClient
	broker *plugin.GRPCBroker
}

// Configure picks the next broker id, starts serving the host services on it
// in the background (go-plugin sends the ConnInfo to the plugin when the
// listener is ready, possibly after the Configure request went out), puts
// the id into the request and calls the plugin.
func (c *grpcClient) Configure(ctx context.Context, req *proto.ConfigureRequest, env Environment) error {
	name := req.GetConfig().GetName()
	newServer := func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		if env.Config != nil {
			proto.RegisterConfigServiceServer(s, &config.GRPCServer{Impl: env.Config, PluginName: name})
		}
		if env.Notify != nil {
			proto.RegisterNotificationServiceServer(s, &notification.GRPCServer{Impl: env.Notify, PluginName: name})
		}
		if env.PluginManager != nil {
			proto.RegisterPluginManagerServiceServer(s, &pluginmanager.GRPCServer{Impl: env.PluginManager})
		}
		return s
	}

	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, newServer)
	req.BackchannelId = id

	_, err := c.client.Configure(ctx, req)
	return err
}

func (c *grpcClient) Shutdown(ctx context.Context) error {
	_, err := c.client.Shutdown(ctx, &proto.ShutdownRequest{})
	return err
}

type grpcServer struct {
	proto.UnimplementedBaseServiceServer

	impl   Base
	broker *plugin.GRPCBroker
}

// Configure dials the backchannel (go-plugin waits up to 5 s for the host's
// ConnInfo), builds the service clients and hands them to the implementation,
// whose init hooks run before this RPC returns.
func (s *grpcServer) Configure(ctx context.Context, req *proto.ConfigureRequest) (*proto.ConfigureResponse, error) {
	conn, err := s.broker.Dial(req.GetBackchannelId())
	if err != nil {
		return nil, err
	}

	env := Environment{
		Config: &config.GRPCClient{Client: proto.NewConfigServiceClient(conn)},
		Notify: &notification.GRPCClient{Client: proto.NewNotificationServiceClient(conn)},
	}
	// The privileged flag decides, not whether the host serves the service:
	// the host serves PluginManagerService to privileged plugins only.
	if req.GetConfig().GetPrivileged() {
		env.PluginManager = &pluginmanager.GRPCClient{Client: proto.NewPluginManagerServiceClient(conn)}
	}

	if err := s.impl.Configure(ctx, req, env); err != nil {
		return nil, err
	}
	return &proto.ConfigureResponse{}, nil
}

func (s *grpcServer) Shutdown(ctx context.Context, _ *proto.ShutdownRequest) (*proto.ShutdownResponse, error) {
	if err := s.impl.Shutdown(ctx); err != nil {
		return nil, err
	}
	return &proto.ShutdownResponse{}, nil
}

var (
	_ plugin.GRPCPlugin       = (*Plugin)(nil)
	_ Base                    = (*grpcClient)(nil)
	_ proto.BaseServiceServer = (*grpcServer)(nil)
)
