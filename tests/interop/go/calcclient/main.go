// calcclient is the tutorial's Go RPC client (sections 2.1.2 and 2.1.3): rpc.Dial /
// rpc.DialHTTP / jsonrpc.Dial chosen by -mode, the sync Call, the async Go + Done, the
// RPCPool connection pool, many goroutines on one connection, and rich structs.
// Every result is printed as one JSON line, for the Python tests to assert on.
//
//	-case basic       Add, Go(Divide)+Done, Divide by zero, an unknown method
//	-case pool        the tutorial's RPCPool (4 connections), 200 calls from 20 goroutines
//	-case concurrent  500 calls from 500 goroutines on one connection, plus 100 Go calls
//	-case rich        Echo.Rich with a rich struct and with the zero value
//	-case bench       -n calls with -conc goroutines on one connection; prints the rate
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"reflect"
	"sync"
	"time"
)

type Args struct {
	A, B int
}

type Inner struct {
	Name string
	Tags []string
}

type Rich struct {
	I   int64
	U   uint64
	F   float64
	B   bool
	S   string
	Raw []byte
	M   map[string]int
	In  Inner
	P   *Inner
	L   []Inner
	N   []int
	I32 int32
	U32 uint32
	F32 float32
	Any interface{}
}

func richFull() Rich {
	return Rich{
		I: math.MinInt64, U: math.MaxUint64, F: 3.25, B: true, S: "héllo, 世界",
		Raw: []byte{0, 1, 2, 255}, M: map[string]int{"k": -7},
		In: Inner{Name: "in", Tags: []string{"a", "b"}}, P: &Inner{Name: "p"},
		L: []Inner{{Name: "x"}, {Tags: []string{"t"}}}, N: []int{0, 1, -1, 1 << 40},
		I32: math.MinInt32, U32: math.MaxUint32, F32: 0.1, Any: 7,
	}
}

// 存储可复用的 RPC 客户端连接，核心是一个缓冲通道
type RPCPool struct {
	conns chan *rpc.Client
}

func NewRPCPool(size int, address string, dial func(string) (*rpc.Client, error)) (*RPCPool, error) {
	pool := &RPCPool{conns: make(chan *rpc.Client, size)}
	for i := 0; i < size; i++ {
		client, err := dial(address)
		if err != nil {
			return nil, err
		}
		pool.conns <- client
	}
	return pool, nil
}

// 从连接池中获取一个可用的 RPC 客户端连接
func (p *RPCPool) Get() *rpc.Client {
	return <-p.conns
}

// 将使用完毕的 RPC 客户端连接归还到连接池中
func (p *RPCPool) Put(client *rpc.Client) {
	p.conns <- client
}

var out = json.NewEncoder(os.Stdout)

func emit(kv ...interface{}) {
	m := map[string]interface{}{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	out.Encode(m)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func errText(err error) interface{} {
	if err == nil {
		return nil
	}
	return err.Error()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:1234", "server address")
	mode := flag.String("mode", "tcp", "tcp | http | jsonrpc")
	which := flag.String("case", "basic", "basic | pool | concurrent | rich | bench")
	n := flag.Int("n", 10000, "bench: number of calls")
	conc := flag.Int("conc", 1, "bench: goroutines sharing one connection")
	flag.Parse()

	dial := func(a string) (*rpc.Client, error) {
		switch *mode {
		case "http":
			return rpc.DialHTTP("tcp", a)
		case "jsonrpc":
			return jsonrpc.Dial("tcp", a)
		}
		return rpc.Dial("tcp", a)
	}
	client, err := dial(*addr)
	if err != nil {
		fail(fmt.Errorf("连接 RPC 服务器失败: %v", err))
	}
	defer client.Close()

	switch *which {
	case "basic":
		args := Args{A: 10, B: 5}
		var result1 int
		// 同步调用 Add 方法
		err = client.Call("Calculator.Add", &args, &result1)
		emit("case", "add", "result", result1, "error", errText(err))

		var result2 float64
		// 异步调用 Divide 方法
		divCall := client.Go("Calculator.Divide", &args, &result2, nil)
		replyCall := <-divCall.Done
		emit("case", "divide", "result", result2, "error", errText(replyCall.Error))

		var result3 float64
		err = client.Call("Calculator.Divide", &Args{A: 1, B: 0}, &result3)
		emit("case", "divide0", "error", errText(err))

		var result4 int
		err = client.Call("Calculator.Nope", &args, &result4)
		emit("case", "unknown_method", "error", errText(err))
		err = client.Call("Nope.Add", &args, &result4)
		emit("case", "unknown_service", "error", errText(err))

		// the connection still works after errors
		var result5 int
		err = client.Call("Calculator.Add", &Args{A: -3, B: 0}, &result5)
		emit("case", "add_after_errors", "result", result5, "error", errText(err))

	case "pool":
		pool, err := NewRPCPool(4, *addr, dial)
		if err != nil {
			fail(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad := 0
		for g := 0; g < 20; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					c := pool.Get()
					var r int
					err := c.Call("Calculator.Add", &Args{A: g, B: i}, &r)
					pool.Put(c)
					if err != nil || r != g+i {
						mu.Lock()
						bad++
						mu.Unlock()
					}
				}
			}(g)
		}
		wg.Wait()
		emit("case", "pool", "calls", 200, "bad", bad)

	case "concurrent":
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad := 0
		for i := 0; i < 500; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				var r int
				err := client.Call("Calculator.Add", &Args{A: i, B: i * 1000}, &r)
				if err != nil || r != i*1001 {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		// async Go calls with a shared Done channel
		done := make(chan *rpc.Call, 100)
		replies := make([]float64, 100)
		for i := 0; i < 100; i++ {
			client.Go("Calculator.Divide", &Args{A: i, B: 4}, &replies[i], done)
		}
		for i := 0; i < 100; i++ {
			c := <-done
			a := c.Args.(*Args)
			if c.Error != nil || *(c.Reply.(*float64)) != float64(a.A)/4 {
				bad++
			}
		}
		emit("case", "concurrent", "calls", 600, "bad", bad)

	case "rich":
		full := richFull()
		if *mode == "jsonrpc" {
			full.Any = nil // JSON has no int/float distinction inside interface{}
		}
		// JSON cannot tell a nil slice or map from an empty one (null vs [] after a trip
		// through another language), so JSON modes compare with that one difference allowed.
		equal := func(a, b Rich) bool { return reflect.DeepEqual(a, b) }
		if *mode == "jsonrpc" {
			equal = jsonEquivalent
		}
		var reply Rich
		err = client.Call("Echo.Rich", &full, &reply)
		emit("case", "rich", "equal", equal(reply, full), "error", errText(err),
			"reply", fmt.Sprintf("%#v", reply))
		var zreply Rich
		err = client.Call("Echo.Rich", &Rich{}, &zreply)
		emit("case", "rich_zero", "equal", equal(zreply, Rich{}), "error", errText(err),
			"reply", fmt.Sprintf("%#v", zreply))

	case "bench":
		var wg sync.WaitGroup
		per := *n / *conc
		start := time.Now()
		errs := 0
		var mu sync.Mutex
		for g := 0; g < *conc; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				args := Args{A: 1, B: 2}
				var r int
				for i := 0; i < per; i++ {
					if err := client.Call("Calculator.Add", &args, &r); err != nil || r != 3 {
						mu.Lock()
						errs++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		secs := time.Since(start).Seconds()
		emit("case", "bench", "calls", per**conc, "seconds", secs, "errors", errs)
	default:
		fail(fmt.Errorf("unknown case %s", *which))
	}
}

// jsonEquivalent compares two values by their JSON form, treating null, [] and {} alike.
func jsonEquivalent(a, b Rich) bool {
	norm := func(v Rich) interface{} {
		data, _ := json.Marshal(v)
		var x interface{}
		json.Unmarshal(data, &x)
		return emptyToNil(x)
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func emptyToNil(x interface{}) interface{} {
	switch v := x.(type) {
	case []interface{}:
		if len(v) == 0 {
			return nil
		}
		for i := range v {
			v[i] = emptyToNil(v[i])
		}
	case map[string]interface{}:
		if len(v) == 0 {
			return nil
		}
		for k := range v {
			v[k] = emptyToNil(v[k])
		}
	case string:
		if v == "" {
			return nil
		}
	}
	return x
}
