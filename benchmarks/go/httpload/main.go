// httpload drives a JSON-RPC 2.0 HTTP endpoint with N keep-alive connections, one call at a
// time per connection, for a fixed time, checking every reply; prints {"calls":..,"rate":..}.
// Written in Go so the load generator costs far less per call than the servers it measures.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "host:port")
	path := flag.String("path", "/jsonrpc", "request path")
	conns := flag.Int("c", 1, "keep-alive connections")
	secs := flag.Float64("t", 2, "seconds")
	flag.Parse()
	body := []byte(`{"jsonrpc":"2.0","method":"Calculator.Add","params":[{"A":10,"B":5}],"id":1}`)
	req := []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", *path, len(body), body))
	run := func(d time.Duration) (int, time.Duration) {
		var wg sync.WaitGroup
		counts := make([]int, *conns)
		start := time.Now()
		deadline := start.Add(d)
		for i := 0; i < *conns; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c, err := net.Dial("tcp", *addr)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				defer c.Close()
				r := bufio.NewReader(c)
				var reply struct {
					Result int `json:"result"`
				}
				for time.Now().Before(deadline) {
					if _, err := c.Write(req); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					resp, err := http.ReadResponse(r, nil)
					if err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					data, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 {
						fmt.Fprintln(os.Stderr, "bad reply", resp.StatusCode, err)
						os.Exit(1)
					}
					reply.Result = 0
					if err := json.NewDecoder(bytes.NewReader(data)).Decode(&reply); err != nil || reply.Result != 15 {
						fmt.Fprintln(os.Stderr, "bad reply body", string(data), err)
						os.Exit(1)
					}
					counts[i]++
				}
			}(i)
		}
		wg.Wait()
		total := 0
		for _, n := range counts {
			total += n
		}
		return total, time.Since(start)
	}
	run(300 * time.Millisecond) // warm up
	n, el := run(time.Duration(*secs * float64(time.Second)))
	fmt.Printf("{\"calls\": %d, \"seconds\": %f, \"rate\": %f}\n", n, el.Seconds(), float64(n)/el.Seconds())
}
