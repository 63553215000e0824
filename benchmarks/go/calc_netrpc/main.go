// The tutorial's Calculator over Go's net/rpc (gob), as a benchmark peer.
//
//	calc_netrpc server ADDR            serve on ADDR, print "listening on ADDR"
//	calc_netrpc client ADDR MODE SECS  MODE is seq or inflight64; prints {"calls":N,"seconds":S}
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type Args struct{ A, B int }

type Calculator struct{}

func (c *Calculator) Add(args *Args, reply *int) error {
	*reply = args.A + args.B
	return nil
}

func main() {
	switch os.Args[1] {
	case "server":
		rpc.Register(new(Calculator))
		l, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("listening on", l.Addr().String())
		for {
			conn, err := l.Accept()
			if err != nil {
				continue
			}
			go rpc.ServeConn(conn)
		}
	case "client":
		client, err := rpc.Dial("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		secs, _ := strconv.ParseFloat(os.Args[4], 64)
		workers := 1
		if os.Args[3] == "inflight64" {
			workers = 64
		}
		var calls int64
		deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var reply int
				args := &Args{A: 10, B: 5}
				for time.Now().Before(deadline) {
					if err := client.Call("Calculator.Add", args, &reply); err != nil || reply != 15 {
						fmt.Fprintln(os.Stderr, "bad reply", err)
						os.Exit(1)
					}
					atomic.AddInt64(&calls, 1)
				}
			}()
		}
		wg.Wait()
		out, _ := json.Marshal(map[string]any{"calls": calls, "seconds": time.Since(start).Seconds()})
		fmt.Println(string(out))
	}
}
