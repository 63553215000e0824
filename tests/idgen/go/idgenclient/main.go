// idgenclient is a Go net/rpc client of wirecall's IdGen service (gob:// or jsonrpc://),
// written the way a Go user calls it: Next(tag) and Decode(id) take their one argument,
// Batch(tag, n) takes both as one Go struct with exported fields (Tag, N: wirecall binds
// Go's spellings to the parameters tag and n), and Decode's reply is decoded into a Go
// struct with exported fields, the same struct on both wires.
// Calls go from several goroutines on one connection; every result is one JSON line.
//
//	-mode gob|jsonrpc  -addr host:port  -g goroutines  -n batch size  -rounds per goroutine
//	-probe: also call Probe.Span(start_ms, time_ms) with a struct {StartMs, TimeMs}
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

// BatchArgs is Batch's argument: no tags, the field names as Go writes them.
type BatchArgs struct {
	Tag string
	N   int
}

// WrongArgs names a field Batch has no parameter for.
type WrongArgs struct {
	Tag  string
	Size int
}

// SpanArgs is Probe.Span's argument (parameters start_ms, time_ms).
type SpanArgs struct {
	StartMs int64
	TimeMs  int64
}

// Decoded is IdGen.Decode's reply. Over gob the fields match by name (wirecall sends ID,
// TimeMs, Worker, Sequence); over JSON-RPC encoding/json matches id, worker, sequence
// case-insensitively and needs the tag for time_ms.
type Decoded struct {
	ID       int64
	TimeMs   int64 `json:"time_ms"`
	Worker   int64
	Sequence int64
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
	probe := flag.Bool("probe", false, "also call Probe.Span with a Go struct")
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
		err := c.Call("IdGen.Batch", BatchArgs{Tag: *tag, N: k}, &ids)
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
	var d Decoded
	err = c.Call("IdGen.Decode", one, &d)
	emit("case", "decode", "id", one, "decoded", d, "error", errText(err))
	// the parameter names themselves also bind (a map keyed tag, n)
	var ids []int64
	err = c.Call("IdGen.Batch", map[string]interface{}{"tag": *tag, "n": 3}, &ids)
	emit("case", "batch_map", "ids", ids, "error", errText(err))
	// the errors a Go caller sees for bad arguments (the connection stays usable)
	err = c.Call("IdGen.Batch", WrongArgs{Tag: *tag, Size: 3}, &ids)
	emit("case", "unknown_field", "error", errText(err))
	err = c.Call("IdGen.Batch", BatchArgs{Tag: *tag, N: 0}, &ids)
	emit("case", "bad_n", "error", errText(err))
	if *probe {
		var span int64
		err = c.Call("Probe.Span", SpanArgs{StartMs: 1000, TimeMs: 1250}, &span)
		emit("case", "span", "span", span, "error", errText(err))
	}
	err = c.Call("IdGen.Next", *tag, &one)
	emit("case", "next", "goroutine", -2, "id", one, "error", errText(err))
}
