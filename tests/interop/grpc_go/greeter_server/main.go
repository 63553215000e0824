// The tutorial's Greeter server (3.2.2); listens on the address in argv[1] (default
// 127.0.0.1:0) and prints {"listen": "host:port"} first.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"

	pb "helloworld/proto/helloworld"

	"google.golang.org/grpc"
)

type server struct {
	// 内嵌UnimplementedGreeterServer以保证向前兼容
	pb.UnimplementedGreeterServer
}

func (s *server) SayHello(ctx context.Context, req *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello, " + req.Name}, nil
}

var _ pb.GreeterServer = (*server)(nil)

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("监听失败: %v", err)
	}
	fmt.Printf("{\"listen\": %q}\n", listener.Addr().String())
	s := grpc.NewServer()
	pb.RegisterGreeterServer(s, &server{})
	if err := s.Serve(listener); err != nil {
		log.Fatalf("启动失败: %v", err)
	}
}
