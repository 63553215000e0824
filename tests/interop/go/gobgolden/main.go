// gobgolden prints the bytes Go's encoding/gob writes for a fixed set of values
// (-mode encode), or decodes hex streams read from stdin into the same Go types and says
// whether they equal the expected values (-mode decode). The Python tests compare
// wirecall's gob encoder and decoder against both. One JSON object per line.
package main

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"reflect"
)

type Point struct{ X, Y int }

type Args struct{ A, B int }

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

type Arr struct {
	A [3]int
	C complex128
}

type Request struct {
	ServiceMethod string
	Seq           uint64
}

type Response struct {
	ServiceMethod string
	Seq           uint64
	Error         string
}

type testCase struct {
	name   string
	values []interface{} // encoded in order on one Encoder
	into   func() interface{}
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

func cases() []testCase {
	full := richFull()
	return []testCase{
		{"point", []interface{}{Point{22, 33}}, func() interface{} { return new(Point) }},
		{"point_twice", []interface{}{Point{1, 2}, Point{3, 4}}, func() interface{} { return new(Point) }},
		{"int3", []interface{}{3}, func() interface{} { return new(int) }},
		{"int_neg", []interface{}{-129}, func() interface{} { return new(int) }},
		{"int64_min", []interface{}{int64(math.MinInt64)}, func() interface{} { return new(int64) }},
		{"uint64_max", []interface{}{uint64(math.MaxUint64)}, func() interface{} { return new(uint64) }},
		{"float17", []interface{}{17.0}, func() interface{} { return new(float64) }},
		{"float_inf", []interface{}{math.Inf(-1)}, func() interface{} { return new(float64) }},
		{"bool_true", []interface{}{true}, func() interface{} { return new(bool) }},
		{"string_utf8", []interface{}{"除数不能为零"}, func() interface{} { return new(string) }},
		{"bytes", []interface{}{[]byte{1, 2, 3}}, func() interface{} { return new([]byte) }},
		{"strings", []interface{}{[]string{"a", "", "c"}}, func() interface{} { return new([]string) }},
		{"map1", []interface{}{map[string]int{"one": 1}}, func() interface{} { return new(map[string]int) }},
		{"args", []interface{}{Args{10, 5}}, func() interface{} { return new(Args) }},
		{"args_zero", []interface{}{Args{}}, func() interface{} { return new(Args) }},
		{"rich", []interface{}{full}, func() interface{} { return new(Rich) }},
		{"rich_zero", []interface{}{Rich{}}, func() interface{} { return new(Rich) }},
		{"arr", []interface{}{Arr{A: [3]int{1, 0, 3}, C: complex(1.5, -2)}}, func() interface{} { return new(Arr) }},
		{"netrpc_request", []interface{}{Request{"Calculator.Add", 1}, Args{10, 5}}, nil},
		{"netrpc_response", []interface{}{Response{"Calculator.Divide", 2, "除数不能为零"}, struct{}{}}, nil},
	}
}

func main() {
	mode := flag.String("mode", "encode", "encode | decode")
	only := flag.String("case", "", "encode only this case (type ids are per process, so a\n"+
		"byte-exact comparison runs each case in a fresh process)")
	flag.Parse()
	out := json.NewEncoder(os.Stdout)
	byName := map[string]testCase{}
	for _, c := range cases() {
		byName[c.name] = c
	}
	if *mode == "encode" {
		for _, c := range cases() {
			if *only != "" && c.name != *only {
				continue
			}
			var buf bytes.Buffer
			enc := gob.NewEncoder(&buf)
			for _, v := range c.values {
				if err := enc.Encode(v); err != nil {
					fmt.Fprintln(os.Stderr, c.name, err)
					os.Exit(1)
				}
			}
			out.Encode(map[string]string{"name": c.name, "hex": hex.EncodeToString(buf.Bytes())})
		}
		return
	}
	// decode: lines of {"name": ..., "hex": ...}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var in struct{ Name, Hex string }
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c := byName[in.Name]
		data, _ := hex.DecodeString(in.Hex)
		dec := gob.NewDecoder(bytes.NewReader(data))
		res := map[string]interface{}{"name": in.Name}
		ok := true
		for _, want := range c.values {
			got := c.into()
			if err := dec.Decode(got); err != nil {
				res["error"] = err.Error()
				ok = false
				break
			}
			g := reflect.ValueOf(got).Elem().Interface()
			if !reflect.DeepEqual(g, want) {
				ok = false
				res["got"] = fmt.Sprintf("%#v", g)
			}
		}
		res["ok"] = ok
		out.Encode(res)
	}
}
