// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/config/config_interface.go
// and config_grpc.go (fallback: the module proxy does not serve the PR).

// Package config is the host's configuration service as a plugin sees it,
// with the gRPC halves that carry it over the broker backchannel.
package config

import (
	"context"

	"pmplugins.test/interop/gen/proto"
)

// Service is scoped access to the host's configuration. The host creates
// options under plugins/<name>/<key>; an unprivileged plugin's reads and
// watches get that prefix added, a privileged plugin uses full keys.
type Service interface {
	RegisterOption(ctx context.Context, option *proto.Option) error
	GetValue(ctx context.Context, key string) (*proto.Value, error)
	// WatchValue streams a message (carrying the full key) whenever a
	// watched value changes; the channel closes when the stream ends.
	WatchValue(ctx context.Context, keys ...string) (<-chan *proto.WatchChangesResponse, error)
}

// GRPCClient is the plugin's half: it calls the host's ConfigService.
type GRPCClient struct {
	Client proto.ConfigServiceClient
}

// RegisterOption asks the host to create an option.
func (c *GRPCClient) RegisterOption(ctx context.Context, option *proto.Option) error {
	_, err := c.Client.RegisterOption(ctx, &proto.RegisterRequest{Option: option})
	return err
}

// GetValue reads one value.
func (c *GRPCClient) GetValue(ctx context.Context, key string) (*proto.Value, error) {
	res, err := c.Client.GetValue(ctx, &proto.GetValueRequest{Key: key})
	if err != nil {
		return nil, err
	}
	return res.GetValue(), nil
}

// WatchValue opens the server stream and forwards every message to the
// returned channel until the stream fails or ends (the error is dropped, as
// in the PR).
func (c *GRPCClient) WatchValue(ctx context.Context, keys ...string) (<-chan *proto.WatchChangesResponse, error) {
	stream, err := c.Client.WatchValues(ctx, &proto.WatchChangesRequest{Keys: keys})
	if err != nil {
		return nil, err
	}
	out := make(chan *proto.WatchChangesResponse)
	go func() {
		defer close(out)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			out <- msg
		}
	}()
	return out, nil
}

// GRPCServer is the host's half: it serves ConfigService for one plugin.
type GRPCServer struct {
	proto.UnimplementedConfigServiceServer

	Impl       Service
	PluginName string
}

// RegisterOption implements proto.ConfigServiceServer.
func (s *GRPCServer) RegisterOption(ctx context.Context, req *proto.RegisterRequest) (*proto.RegisterResponse, error) {
	if err := s.Impl.RegisterOption(ctx, req.GetOption()); err != nil {
		return nil, err
	}
	return &proto.RegisterResponse{}, nil
}

// GetValue implements proto.ConfigServiceServer.
func (s *GRPCServer) GetValue(ctx context.Context, req *proto.GetValueRequest) (*proto.GetValueResponse, error) {
	v, err := s.Impl.GetValue(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &proto.GetValueResponse{Value: v}, nil
}

// WatchValues implements proto.ConfigServiceServer: it relays the
// implementation's channel until that closes.
func (s *GRPCServer) WatchValues(req *proto.WatchChangesRequest, stream proto.ConfigService_WatchValuesServer) error {
	ch, err := s.Impl.WatchValue(stream.Context(), req.GetKeys()...)
	if err != nil {
		return err
	}
	for msg := range ch {
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ Service                   = (*GRPCClient)(nil)
	_ proto.ConfigServiceServer = (*GRPCServer)(nil)
)
