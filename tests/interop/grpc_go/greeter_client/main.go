// The tutorial's Greeter client (3.2.3): greeter_client ADDR NAME; prints {"message": ...}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	pb "helloworld/proto/helloworld"

	"google.golang.org/grpc"
)

func main() {
	conn, err := grpc.Dial(os.Args[1], grpc.WithInsecure() /* Debian grpc-go 1.33 predates credentials/insecure */)
	if err != nil {
		log.Fatalf("连接失败: %v", err)
	}
	defer conn.Close()
	client := pb.NewGreeterClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.SayHello(ctx, &pb.HelloRequest{Name: os.Args[2]})
	if err != nil {
		log.Fatalf("调用失败: %v", err)
	}
	out, _ := json.Marshal(map[string]string{"message": resp.Message})
	fmt.Println(string(out))
}
