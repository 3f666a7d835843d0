// A plain hashicorp/yamux server for interop tests. It echoes every stream it accepts
// (reading until the peer's FIN, then closing), reports resets, and can open streams
// of its own towards the client and verify their echo by hash.
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"

	"github.com/hashicorp/yamux"
)

var out sync.Mutex

func say(format string, args ...interface{}) {
	out.Lock()
	defer out.Unlock()
	fmt.Printf(format+"\n", args...)
}

func echo(stream *yamux.Stream) {
	defer stream.Close()
	if _, err := io.Copy(stream, stream); err != nil {
		say("stream %d: error %v", stream.StreamID(), err)
		return
	}
}

func payload(index, size int) []byte {
	data := make([]byte, size)
	rand.New(rand.NewSource(int64(index))).Read(data)
	return data
}

// roundTrip writes size bytes and reads their echo before closing: this yamux's Read
// returns EOF as soon as it has sent its own FIN.
func roundTrip(session *yamux.Session, index, size int) error {
	stream, err := session.OpenStream()
	if err != nil {
		return err
	}
	defer stream.Close()
	data := payload(index, size)
	written := make(chan error, 1)
	go func() {
		_, err := stream.Write(data)
		written <- err
	}()
	echoed := make([]byte, size)
	if _, err := io.ReadFull(stream, echoed); err != nil {
		return fmt.Errorf("reading the echo: %v", err)
	}
	if err := <-written; err != nil {
		return fmt.Errorf("writing: %v", err)
	}
	if sha256.Sum256(echoed) != sha256.Sum256(data) || !bytes.Equal(echoed, data) {
		return fmt.Errorf("the echo differs")
	}
	return nil
}

func serve(conn net.Conn, open, size, backlog int, accept bool) {
	config := yamux.DefaultConfig()
	config.LogOutput = os.Stderr
	if backlog > 0 {
		config.AcceptBacklog = backlog
	}
	session, err := yamux.Server(conn, config)
	if err != nil {
		say("session error %v", err)
		return
	}
	defer session.Close()
	if open > 0 {
		go func() {
			var wg sync.WaitGroup
			failures := make(chan error, open)
			for i := 0; i < open; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					if err := roundTrip(session, i, size); err != nil {
						failures <- fmt.Errorf("stream %d: %v", i, err)
					}
				}(i)
			}
			wg.Wait()
			close(failures)
			failed := 0
			for err := range failures {
				failed++
				say("opened-fail %v", err)
			}
			say("opened-done %d ok %d failed", open-failed, failed)
		}()
	}
	if !accept {
		<-session.CloseChan()
		return
	}
	for {
		stream, err := session.AcceptStream()
		if err != nil {
			return
		}
		go echo(stream)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "where to listen")
	open := flag.Int("open", 0, "streams to open towards each client")
	size := flag.Int("bytes", 1024, "bytes per opened stream")
	backlog := flag.Int("backlog", 0, "yamux accept backlog (0: default)")
	accept := flag.Bool("accept", true, "accept and echo the client's streams")
	flag.Parse()
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	say("listening on %s", listener.Addr())
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		go serve(conn, *open, *size, *backlog, *accept)
	}
}
