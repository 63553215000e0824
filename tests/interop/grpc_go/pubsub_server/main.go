// The tutorial's PubSub server (3.3.2) with an in-memory broker in place of Redis.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"

	pb "pubsub/proto/pubsub"
)

type pubSubServer struct {
	pb.UnimplementedPubSubServer
	mu   sync.Mutex
	subs map[string][]chan string
}

func (s *pubSubServer) Publish(ctx context.Context, req *pb.PublishRequest) (*pb.PublishResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs[req.Topic] {
		select {
		case ch <- req.Message:
		default:
		}
	}
	return &pb.PublishResponse{Success: true}, nil
}

func (s *pubSubServer) Subscribe(req *pb.SubscribeRequest, stream pb.PubSub_SubscribeServer) error {
	ch := make(chan string, 64)
	s.mu.Lock()
	s.subs[req.Topic] = append(s.subs[req.Topic], ch)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		list := s.subs[req.Topic]
		for i, c := range list {
			if c == ch {
				s.subs[req.Topic] = append(list[:i], list[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}()
	for {
		select {
		case msg := <-ch:
			if err := stream.Send(&pb.SubscribeResponse{Message: msg}); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("failed to listen: %v", err)
	}
	fmt.Printf("{\"listen\": %q}\n", lis.Addr().String())
	server := grpc.NewServer()
	pb.RegisterPubSubServer(server, &pubSubServer{subs: map[string][]chan string{}})
	if err := server.Serve(lis); err != nil {
		log.Fatalf("failed to serve: %v", err)
	}
}
