// Reproduces the behaviour of safing/portmaster PR #834's plugin/shared/notification/notification_interface.go
// and notification_grpc.go (fallback: the module proxy does not serve the PR).

// Package notification is the host's notification service as a plugin sees
// it, with the gRPC halves that carry it over the broker backchannel.
package notification

import (
	"context"

	"pmplugins.test/interop/gen/proto"
)

// Service shows notifications to the user.
type Service interface {
	// CreateNotification shows n. The channel yields the id of the custom
	// action the user picked; it closes at once when n has no custom action
	// (an action without action_type).
	CreateNotification(ctx context.Context, n *proto.Notification) (<-chan string, error)
}

// GRPCClient is the plugin's half.
type GRPCClient struct {
	Client proto.NotificationServiceClient
}

// CreateNotification opens the server stream and forwards each selected
// action id until the stream ends.
func (c *GRPCClient) CreateNotification(ctx context.Context, n *proto.Notification) (<-chan string, error) {
	stream, err := c.Client.CreateNotification(ctx, &proto.CreateNotificationRequest{Notification: n})
	if err != nil {
		return nil, err
	}
	out := make(chan string)
	go func() {
		defer close(out)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			out <- msg.GetSelectedActionId()
		}
	}()
	return out, nil
}

// GRPCServer is the host's half, serving one plugin.
type GRPCServer struct {
	proto.UnimplementedNotificationServiceServer

	Impl       Service
	PluginName string
}

// CreateNotification implements proto.NotificationServiceServer.
func (s *GRPCServer) CreateNotification(req *proto.CreateNotificationRequest, stream proto.NotificationService_CreateNotificationServer) error {
	ctx := stream.Context()
	ch, err := s.Impl.CreateNotification(ctx, req.GetNotification())
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case id, ok := <-ch:
			if !ok {
				return nil
			}
			if err := stream.Send(&proto.CreateNotificationResponse{SelectedActionId: id}); err != nil {
				return err
			}
		}
	}
}

var (
	_ Service                         = (*GRPCClient)(nil)
	_ proto.NotificationServiceServer = (*GRPCServer)(nil)
)
