// yamuxbench: hashicorp/yamux against itself over loopback, for the benchmark suite of
// streams. It serves and dials in one process, runs the suite's workloads and prints one
// JSON object: bulk MB/s through one stream, and exchanges per second one after another
// and 100 at once (open a stream, echo 64 bytes, close).
//
// A stream's first byte says what the server does with it: 'e' echoes to the end, 's'
// reads an 8-byte length, swallows that many bytes and answers "ok". This yamux returns
// EOF from Read as soon as it has sent its own FIN, so the client reads everything it
// expects before it closes.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

func serve(session *yamux.Session) {
	for {
		stream, err := session.AcceptStream()
		if err != nil {
			return
		}
		go handle(stream)
	}
}

func handle(stream *yamux.Stream) {
	defer stream.Close()
	mode := make([]byte, 1)
	if _, err := io.ReadFull(stream, mode); err != nil {
		return
	}
	if mode[0] == 'e' {
		io.Copy(stream, stream)
		return
	}
	header := make([]byte, 8)
	if _, err := io.ReadFull(stream, header); err != nil {
		return
	}
	io.CopyN(io.Discard, stream, int64(binary.BigEndian.Uint64(header)))
	stream.Write([]byte("ok"))
}

var message = make([]byte, 64)

func exchange(session *yamux.Session) error {
	stream, err := session.OpenStream()
	if err != nil {
		return err
	}
	defer stream.Close()
	if _, err := stream.Write(append([]byte{'e'}, message...)); err != nil {
		return err
	}
	echoed := make([]byte, len(message))
	_, err = io.ReadFull(stream, echoed)
	return err
}

func bulk(session *yamux.Session, total int) (float64, error) {
	started := time.Now()
	stream, err := session.OpenStream()
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	header := make([]byte, 9)
	header[0] = 's'
	chunk := make([]byte, 1<<20)
	count := total / len(chunk)
	binary.BigEndian.PutUint64(header[1:], uint64(count*len(chunk)))
	if _, err := stream.Write(header); err != nil {
		return 0, err
	}
	for i := 0; i < count; i++ {
		if _, err := stream.Write(chunk); err != nil {
			return 0, err
		}
	}
	answer := make([]byte, 2)
	if _, err := io.ReadFull(stream, answer); err != nil {
		return 0, err
	}
	return float64(count*len(chunk)) / time.Since(started).Seconds() / 1e6, nil
}

func rate(session *yamux.Session, total, workers int) (float64, error) {
	share := total / workers
	if share < 1 {
		share = 1
	}
	failures := make(chan error, workers)
	var wg sync.WaitGroup
	started := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < share; i++ {
				if err := exchange(session); err != nil {
					failures <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	close(failures)
	if err := <-failures; err != nil {
		return 0, err
	}
	return float64(share*workers) / elapsed, nil
}

func run(total, opens, concurrent int) (map[string]float64, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer listener.Close()
	config := yamux.DefaultConfig()
	config.LogOutput = io.Discard
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			session, err := yamux.Server(conn, config)
			if err != nil {
				return
			}
			go serve(session)
		}
	}()
	conn, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		return nil, err
	}
	session, err := yamux.Client(conn, config)
	if err != nil {
		return nil, err
	}
	defer session.Close()
	results := map[string]float64{}
	if err := exchange(session); err != nil {
		return nil, err
	}
	if results["bulk"], err = bulk(session, total); err != nil {
		return nil, err
	}
	if results["rate"], err = rate(session, opens, 1); err != nil {
		return nil, err
	}
	if results["rate_100"], err = rate(session, concurrent, 100); err != nil {
		return nil, err
	}
	return results, nil
}

func main() {
	total := flag.Int("bytes", 128<<20, "bytes through one stream")
	opens := flag.Int("opens", 1500, "exchanges one after another")
	concurrent := flag.Int("concurrent", 3000, "exchanges, 100 at once")
	flag.Parse()
	results, err := run(*total, *opens, *concurrent)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(results)
}
