// The tutorial's subscriber (3.3.4), bounded: pubsub_subscriber ADDR TOPIC N prints
// {"subscribed": TOPIC} once the call is started, then N {"message": ...} lines, then exits.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"

	pb "pubsub/proto/pubsub"
)

func main() {
	conn, err := grpc.Dial(os.Args[1], grpc.WithInsecure() /* Debian grpc-go 1.33 predates credentials/insecure */)
	if err != nil {
		log.Fatalf("did not connect: %v", err)
	}
	defer conn.Close()
	client := pb.NewPubSubClient(conn)
	topic := os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := client.Subscribe(ctx, &pb.SubscribeRequest{Topic: topic})
	if err != nil {
		log.Fatalf("Could not subscribe to topic %s: %v", topic, err)
	}
	out, _ := json.Marshal(map[string]string{"subscribed": topic})
	fmt.Println(string(out))
	for i := 0; i < n; i++ {
		msg, err := stream.Recv()
		if err != nil {
			log.Fatalf("Error receiving message from topic %s: %v", topic, err)
		}
		out, _ := json.Marshal(map[string]string{"message": msg.Message})
		fmt.Println(string(out))
	}
}
