// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/pluginmanager/plugin_manager_interface.go
// and plugin_manager_grpc.go (fallback: the module proxy does not serve the PR).

// Package pluginmanager is the host's plugin manager, offered to privileged
// plugins only, with its gRPC halves.
package pluginmanager

import (
	"context"

	"pmplugins.test/interop/gen/proto"
)

// Service manages the host's plugins.
type Service interface {
	ListPlugins(ctx context.Context) ([]*proto.Plugin, error)
	RegisterPlugin(ctx context.Context, cfg *proto.PluginConfig) error
	UnregisterPlugin(ctx context.Context, name string) error
	StopPlugin(ctx context.Context, name string) error
	StartPlugin(ctx context.Context, name string) error
}

// GRPCClient is the plugin's half.
type GRPCClient struct {
	Client proto.PluginManagerServiceClient
}

// ListPlugins implements Service.
func (c *GRPCClient) ListPlugins(ctx context.Context) ([]*proto.Plugin, error) {
	res, err := c.Client.ListPlugins(ctx, &proto.ListPluginsRequest{})
	if err != nil {
		return nil, err
	}
	return res.GetPlugins(), nil
}

// RegisterPlugin implements Service.
func (c *GRPCClient) RegisterPlugin(ctx context.Context, cfg *proto.PluginConfig) error {
	_, err := c.Client.RegisterPlugin(ctx, &proto.RegisterPluginRequest{Config: cfg})
	return err
}

// UnregisterPlugin implements Service.
func (c *GRPCClient) UnregisterPlugin(ctx context.Context, name string) error {
	_, err := c.Client.UnregisterPlugin(ctx, &proto.UnregisterPluginRequest{Name: name})
	return err
}

// StopPlugin implements Service.
func (c *GRPCClient) StopPlugin(ctx context.Context, name string) error {
	_, err := c.Client.StopPlugin(ctx, &proto.StopPluginRequest{Name: name})
	return err
}

// StartPlugin implements Service.
func (c *GRPCClient) StartPlugin(ctx context.Context, name string) error {
	_, err := c.Client.StartPlugin(ctx, &proto.StartPluginRequest{Name: name})
	return err
}

// GRPCServer is the host's half.
type GRPCServer struct {
	proto.UnimplementedPluginManagerServiceServer

	Impl Service
}

// ListPlugins implements proto.PluginManagerServiceServer.
func (s *GRPCServer) ListPlugins(ctx context.Context, _ *proto.ListPluginsRequest) (*proto.ListPluginsResponse, error) {
	plugins, err := s.Impl.ListPlugins(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.ListPluginsResponse{Plugins: plugins}, nil
}

// RegisterPlugin implements proto.PluginManagerServiceServer.
func (s *GRPCServer) RegisterPlugin(ctx context.Context, req *proto.RegisterPluginRequest) (*proto.RegisterPluginResponse, error) {
	if err := s.Impl.RegisterPlugin(ctx, req.GetConfig()); err != nil {
		return nil, err
	}
	return &proto.RegisterPluginResponse{}, nil
}

// UnregisterPlugin implements proto.PluginManagerServiceServer.
func (s *GRPCServer) UnregisterPlugin(ctx context.Context, req *proto.UnregisterPluginRequest) (*proto.UnregisterPluginResponse, error) {
	if err := s.Impl.UnregisterPlugin(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &proto.UnregisterPluginResponse{}, nil
}

// StopPlugin implements proto.PluginManagerServiceServer.
func (s *GRPCServer) StopPlugin(ctx context.Context, req *proto.StopPluginRequest) (*proto.StopPluginResponse, error) {
	if err := s.Impl.StopPlugin(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &proto.StopPluginResponse{}, nil
}

// StartPlugin implements proto.PluginManagerServiceServer.
func (s *GRPCServer) StartPlugin(ctx context.Context, req *proto.StartPluginRequest) (*proto.StartPluginResponse, error) {
	if err := s.Impl.StartPlugin(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &proto.StartPluginResponse{}, nil
}

var (
	_ Service                          = (*GRPCClient)(nil)
	_ proto.PluginManagerServiceServer = (*GRPCServer)(nil)
)
