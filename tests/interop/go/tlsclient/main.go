// tlsclient is Go's net/rpc client over TLS: tls.Dial with the test CA (and a client
// certificate for mTLS when -cert/-key are given), then on the TLS connection rpc.NewClient
// (gob, -codec gob: gobs://) or jsonrpc.NewClient (-codec jsonrpc: jsonrpcs://).
// It calls Calculator.Add and Who.Me and prints one JSON line per call:
// {"method": ..., "result": ...} or {"method": ..., "error": ...}.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
)

type Args struct {
	A, B int
}

func main() {
	addr := flag.String("addr", "", "host:port")
	ca := flag.String("ca", "", "CA certificate (PEM)")
	cert := flag.String("cert", "", "client certificate (PEM)")
	key := flag.String("key", "", "client key (PEM)")
	codec := flag.String("codec", "gob", "gob (rpc.NewClient) or jsonrpc (jsonrpc.NewClient)")
	flag.Parse()
	if *codec != "gob" && *codec != "jsonrpc" {
		fmt.Fprintln(os.Stderr, "-codec: gob or jsonrpc, not", *codec)
		os.Exit(2)
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	conn, err := tls.Dial("tcp", *addr, conf)
	if err != nil {
		out, _ := json.Marshal(map[string]string{"dial": err.Error()})
		fmt.Println(string(out))
		return
	}
	var client *rpc.Client
	if *codec == "jsonrpc" {
		client = jsonrpc.NewClient(conn)
	} else {
		client = rpc.NewClient(conn)
	}
	defer client.Close()
	var sum int
	report("Calculator.Add", client.Call("Calculator.Add", Args{2, 3}, &sum), sum)
	var who string
	report("Who.Me", client.Call("Who.Me", Args{1, 1}, &who), who)
}

func report(method string, err error, result interface{}) {
	line := map[string]interface{}{"method": method}
	if err != nil {
		line["error"] = err.Error()
	} else {
		line["result"] = result
	}
	out, _ := json.Marshal(line)
	fmt.Println(string(out))
}
