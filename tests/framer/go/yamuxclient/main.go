// A plain hashicorp/yamux client for interop tests: it opens K concurrent streams, sends
// N bytes on each, verifies the echo by hash, and echoes the streams the server opens.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

func payload(index, size int) []byte {
	data := make([]byte, size)
	rand.New(rand.NewSource(int64(index) + 1000)).Read(data)
	return data
}

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
	// read the whole echo before closing: this yamux's Read returns EOF as soon as it
	// has sent its own FIN
	echoed := make([]byte, size)
	if _, err := io.ReadFull(stream, echoed); err != nil {
		return fmt.Errorf("reading the echo: %v", err)
	}
	if err := <-written; err != nil {
		return fmt.Errorf("writing: %v", err)
	}
	if sha256.Sum256(echoed) != sha256.Sum256(data) {
		return fmt.Errorf("the echo differs")
	}
	if err := stream.Close(); err != nil {
		return fmt.Errorf("closing: %v", err)
	}
	return nil
}

func main() {
	addr := flag.String("connect", "", "the server")
	streams := flag.Int("streams", 1, "concurrent streams")
	size := flag.Int("bytes", 1024, "bytes per stream")
	linger := flag.Duration("linger", 0, "keep echoing server-opened streams this long")
	flag.Parse()
	conn, err := net.Dial("tcp", *addr)
	if err != nil {
		fmt.Println("dial failed:", err)
		os.Exit(1)
	}
	config := yamux.DefaultConfig()
	config.LogOutput = os.Stderr
	session, err := yamux.Client(conn, config)
	if err != nil {
		fmt.Println("session failed:", err)
		os.Exit(1)
	}
	go func() {
		for {
			stream, err := session.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer stream.Close()
				io.Copy(stream, stream)
			}()
		}
	}()
	var wg sync.WaitGroup
	failures := make(chan error, *streams)
	started := time.Now()
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := roundTrip(session, i, *size); err != nil {
				failures <- fmt.Errorf("stream %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(failures)
	failed := 0
	for err := range failures {
		failed++
		fmt.Println("fail", err)
	}
	if _, err := session.Ping(); err != nil {
		fmt.Println("ping failed:", err)
		failed++
	}
	time.Sleep(*linger)
	fmt.Printf("done %d ok %d failed in %.2fs\n", *streams-failed, failed, time.Since(started).Seconds())
	session.Close()
	if failed > 0 {
		os.Exit(1)
	}
}
