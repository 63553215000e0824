// idgenclient is a Go net/rpc client of wirecall's IdGen service (gob:// or jsonrpc://),
// written the way a Go user calls it: Next(tag) and Decode(id) take their one argument,
// Batch(tag, n) takes both as one argument whose keys are the parameter names: a map over
// gob (a Go struct's field names are capitalised, and gob sends them as they are), a struct
// with json tags over JSON-RPC.
// Calls go from several goroutines on one connection; every result is one JSON line.
//
//	-mode gob|jsonrpc  -addr host:port  -g goroutines  -n batch size  -rounds per goroutine
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"sync"
)

// BatchArgs is Batch's argument over JSON-RPC (Go's encoding/json honours the tags).
type BatchArgs struct {
	Tag string `json:"tag"`
	N   int    `json:"n"`
}

// Decoded is IdGen.Decode's reply.
type Decoded struct {
	ID       int64 `json:"id"`
	TimeMs   int64 `json:"time_ms"`
	Worker   int64 `json:"worker"`
	Sequence int64 `json:"sequence"`
}

var out = json.NewEncoder(os.Stdout)
var mu sync.Mutex

func emit(kv ...interface{}) {
	m := map[string]interface{}{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	mu.Lock()
	out.Encode(m)
	mu.Unlock()
}

func errText(err error) interface{} {
	if err == nil {
		return nil
	}
	return err.Error()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7070", "server address")
	mode := flag.String("mode", "gob", "gob | jsonrpc")
	g := flag.Int("g", 4, "goroutines on one connection")
	n := flag.Int("n", 500, "batch size")
	rounds := flag.Int("rounds", 5, "Next + Batch rounds per goroutine")
	tag := flag.String("tag", "orders", "business tag")
	flag.Parse()

	var c *rpc.Client
	var err error
	if *mode == "jsonrpc" {
		c, err = jsonrpc.Dial("tcp", *addr)
	} else {
		c, err = rpc.Dial("tcp", *addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()

	batch := func(k int) ([]int64, error) {
		var ids []int64
		if *mode == "jsonrpc" {
			err := c.Call("IdGen.Batch", BatchArgs{Tag: *tag, N: k}, &ids)
			return ids, err
		}
		err := c.Call("IdGen.Batch", map[string]interface{}{"tag": *tag, "n": k}, &ids)
		return ids, err
	}

	var wg sync.WaitGroup
	for w := 0; w < *g; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < *rounds; r++ {
				var one int64
				err := c.Call("IdGen.Next", *tag, &one)
				emit("case", "next", "goroutine", w, "id", one, "error", errText(err))
				ids, err := batch(*n)
				emit("case", "batch", "goroutine", w, "ids", ids, "error", errText(err))
			}
		}(w)
	}
	wg.Wait()

	var one int64
	err = c.Call("IdGen.Next", *tag, &one)
	emit("case", "next", "goroutine", -1, "id", one, "error", errText(err))
	if *mode == "jsonrpc" {
		// (over gob the reply is a struct with lower-case field names, which Go's gob cannot
		// decode into a Go struct: Decode is for the other wires there)
		var d Decoded
		err = c.Call("IdGen.Decode", one, &d)
		emit("case", "decode", "id", one, "decoded", d, "error", errText(err))
	}
	// the error a Go caller sees for a bad argument (the connection stays usable)
	var ids []int64
	if *mode == "jsonrpc" {
		err = c.Call("IdGen.Batch", BatchArgs{Tag: *tag, N: 0}, &ids)
	} else {
		err = c.Call("IdGen.Batch", map[string]interface{}{"tag": *tag, "n": 0}, &ids)
	}
	emit("case", "bad_n", "error", errText(err))
	err = c.Call("IdGen.Next", *tag, &one)
	emit("case", "next", "goroutine", -2, "id", one, "error", errText(err))
}
