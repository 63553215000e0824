// The tutorial's publisher (3.3.3), bounded: pubsub_publisher ADDR TOPIC MSG...; one JSON
// line per publish: {"topic":..., "success":...}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"

	pb "pubsub/proto/pubsub"
)

func main() {
	conn, err := grpc.Dial(os.Args[1], grpc.WithInsecure() /* Debian grpc-go 1.33 predates credentials/insecure */)
	if err != nil {
		log.Fatalf("无法连接: %v", err)
	}
	defer conn.Close()
	client := pb.NewPubSubClient(conn)
	topic := os.Args[2]
	for _, message := range os.Args[3:] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.Publish(ctx, &pb.PublishRequest{Topic: topic, Message: message})
		cancel()
		if err != nil {
			log.Fatalf("发布到主题 %s 失败: %v", topic, err)
		}
		out, _ := json.Marshal(map[string]interface{}{"topic": topic, "success": resp.Success})
		fmt.Println(string(out))
	}
}
