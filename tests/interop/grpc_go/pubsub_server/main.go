// The tutorial's PubSub server (3.3.2) on Redis: the same commands (PUBLISH, and SUBSCRIBE on a
// connection of its own per Subscribe call, closed when the stream's context ends). The
// tutorial uses go-redis, which Debian does not package; this port uses redigo
// (golang-github-gomodule-redigo-dev). Usage: pubsub_server [LISTEN_ADDR [REDIS_ADDR]]
// (defaults 127.0.0.1:0 and 127.0.0.1:6379); prints {"listen": "host:port"} first.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/gomodule/redigo/redis"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "pubsub/proto/pubsub"
)

type pubSubServer struct {
	pb.UnimplementedPubSubServer
	redisAddr string
	pool      *redis.Pool
}

func NewPubSubServer(addr string) *pubSubServer {
	pool := &redis.Pool{
		MaxIdle:     64,
		IdleTimeout: 240 * time.Second,
		Dial:        func() (redis.Conn, error) { return redis.Dial("tcp", addr) },
	}
	c := pool.Get()
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		log.Fatalf("failed to connect to Redis: %v", err)
	}
	return &pubSubServer{redisAddr: addr, pool: pool}
}

func (s *pubSubServer) Publish(ctx context.Context, req *pb.PublishRequest) (*pb.PublishResponse, error) {
	c := s.pool.Get()
	defer c.Close()
	if _, err := c.Do("PUBLISH", req.Topic, req.Message); err != nil {
		return nil, status.Errorf(codes.Internal, "failed to publish message: %v", err)
	}
	return &pb.PublishResponse{Success: true}, nil
}

func (s *pubSubServer) Subscribe(req *pb.SubscribeRequest, stream pb.PubSub_SubscribeServer) error {
	c, err := redis.Dial("tcp", s.redisAddr)
	if err != nil {
		return status.Errorf(codes.Internal, "failed to subscribe: %v", err)
	}
	psc := redis.PubSubConn{Conn: c}
	defer psc.Close()
	if err := psc.Subscribe(req.Topic); err != nil {
		return status.Errorf(codes.Internal, "failed to subscribe: %v", err)
	}
	go func() { // go-redis closes the subscription with the stream's context; so do we
		<-stream.Context().Done()
		psc.Close()
	}()
	for {
		switch v := psc.Receive().(type) {
		case redis.Message:
			if err := stream.Send(&pb.SubscribeResponse{Message: string(v.Data)}); err != nil {
				return status.Errorf(codes.Internal, "failed to send message: %v", err)
			}
		case redis.Subscription:
		case error:
			if stream.Context().Err() != nil {
				return nil
			}
			return status.Errorf(codes.Internal, "subscription failed: %v", v)
		}
	}
}

func main() {
	addr, redisAddr := "127.0.0.1:0", "127.0.0.1:6379"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	if len(os.Args) > 2 {
		redisAddr = os.Args[2]
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("failed to listen: %v", err)
	}
	srv := NewPubSubServer(redisAddr)
	fmt.Printf("{\"listen\": %q}\n", lis.Addr().String())
	server := grpc.NewServer()
	pb.RegisterPubSubServer(server, srv)
	if err := server.Serve(lis); err != nil {
		log.Fatalf("failed to serve: %v", err)
	}
}
