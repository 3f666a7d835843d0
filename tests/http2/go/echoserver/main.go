// An HTTP/2 echo server on golang.org/x/net/http2, speaking h2c with prior knowledge.
// It behaves like `streams echo`: each request header NAME comes back as x-echo-NAME,
// a request carrying x-reject is refused (403), and the body is echoed as it arrives.
// It prints "listening on HOST:PORT" once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"

	"golang.org/x/net/http2"
)

func echo(w http.ResponseWriter, r *http.Request) {
	for name, values := range r.Header {
		for _, value := range values {
			w.Header().Add("x-echo-"+strings.ToLower(name), value)
		}
	}
	if r.Header.Get("x-reject") != "" {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	flusher.Flush()
	buffer := make([]byte, 64*1024)
	for {
		n, err := r.Body.Read(buffer)
		if n > 0 {
			if _, werr := w.Write(buffer[:n]); werr != nil {
				return
			}
			// full duplex with this version needs a flush after each write
			flusher.Flush()
		}
		if err != nil {
			return
		}
	}
}

func main() {
	address := flag.String("listen", "127.0.0.1:0", "where to listen")
	flag.Parse()
	listener, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	server := &http2.Server{MaxConcurrentStreams: 1000, MaxReadFrameSize: 256 << 10}
	handler := http.HandlerFunc(echo)
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go server.ServeConn(conn, &http2.ServeConnOpts{Handler: handler})
	}
}
