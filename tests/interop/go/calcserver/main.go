// calcserver is the tutorial's Go RPC server (sections 2.1.1, 2.2 and 2.2.1) with the
// listening address and the transport chosen by flags, so one program covers every case:
//
//	-mode tcp       rpc.Register + rpc.ServeConn per accepted connection   (TCP + Gob)
//	-mode http      rpc.HandleHTTP + http.Serve                            (HTTP + Gob)
//	-mode jsonrpc   jsonrpc.ServeConn per accepted connection              (TCP + JSON)
//	-mode httpjson  the tutorial's /jsonrpc handler over jsonrpc.ServeConn (HTTP + JSON)
//
// It prints {"listen": "host:port"} once listening. Besides Calculator it registers Echo,
// whose methods carry a rich struct (for the codec interop tests) and sleep (for out-of-order
// replies).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"reflect"
	"time"
)

// 定义一个结构体，RPC 方法必须绑定到这个结构体上
type Calculator struct{}

// RPC 方法：求和
func (c *Calculator) Add(args *Args, reply *int) error {
	*reply = args.A + args.B
	return nil
}

// RPC 方法：除法（包含错误处理）
func (c *Calculator) Divide(args *Args, reply *float64) error {
	if args.B == 0 {
		return errors.New("除数不能为零")
	}
	*reply = float64(args.A) / float64(args.B)
	return nil
}

// 定义 RPC 方法的参数结构体
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

type Echo struct{}

// Rich replies with its argument.
func (e *Echo) Rich(args *Rich, reply *Rich) error {
	*reply = *args
	return nil
}

// Check says whether the argument equals richFull() exactly (what a Go program would see).
func (e *Echo) Check(args *Rich, reply *string) error {
	want := richFull()
	if reflect.DeepEqual(*args, want) {
		*reply = "equal"
		return nil
	}
	*reply = fmt.Sprintf("got %#v", *args)
	return nil
}

// Sleep waits ms milliseconds, then replies ms (replies come back out of order).
func (e *Echo) Sleep(ms *int, reply *int) error {
	time.Sleep(time.Duration(*ms) * time.Millisecond)
	*reply = *ms
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	mode := flag.String("mode", "tcp", "tcp | http | jsonrpc | httpjson")
	flag.Parse()

	rpc.Register(new(Calculator)) // 注册服务
	rpc.Register(new(Echo))
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "监听失败:", err)
		os.Exit(1)
	}
	defer listener.Close()
	out, _ := json.Marshal(map[string]string{"listen": listener.Addr().String()})
	fmt.Println(string(out))

	switch *mode {
	case "tcp", "jsonrpc":
		for {
			conn, err := listener.Accept()
			if err != nil {
				fmt.Fprintln(os.Stderr, "连接失败:", err)
				continue
			}
			if *mode == "tcp" {
				go rpc.ServeConn(conn) // 处理 RPC 连接
			} else {
				go jsonrpc.ServeConn(conn)
			}
		}
	case "http":
		rpc.HandleHTTP()
		http.Serve(listener, nil)
	case "httpjson":
		// 在 /jsonrpc 路径上配置一个 HTTP 处理函数
		http.HandleFunc("/jsonrpc", func(w http.ResponseWriter, r *http.Request) {
			var conn io.ReadWriteCloser = struct {
				io.Writer
				io.ReadCloser
			}{
				ReadCloser: r.Body,
				Writer:     w,
			}
			jsonrpc.ServeConn(conn)
		})
		http.Serve(listener, nil)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", *mode)
		os.Exit(2)
	}
}
