// spdybench: moby/spdystream against itself over loopback, for the benchmark suite of
// streams. It serves and dials in one process, runs the suite's workloads and prints one
// JSON object: bulk MB/s through one stream, exchanges per second one after another and
// 100 at once (open a stream and wait for its reply, echo 64 bytes, half-close, read to
// the end), and the open latency (SYN_STREAM to SYN_REPLY) in microseconds.
//
// The header x-mode says what the server does: "echo" echoes to the end, "sink" counts
// the bytes to the end and answers the count. The client writes only after the reply:
// this spdystream drops data that arrives before it has replied.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

func handle(stream *spdystream.Stream) {
	if err := stream.SendReply(http.Header{}, false); err != nil {
		return
	}
	if stream.Headers().Get("x-mode") == "sink" {
		count, _ := io.Copy(io.Discard, stream)
		stream.Write([]byte(strconv.FormatInt(count, 10)))
		stream.Close()
		return
	}
	// read and write in separate goroutines: a handler that stops reading while it
	// writes can stall this spdystream's shared frame worker
	chunks := make(chan []byte, 16)
	go func() {
		defer close(chunks)
		for {
			buffer := make([]byte, 65536)
			n, err := stream.Read(buffer)
			if n > 0 {
				chunks <- buffer[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	for chunk := range chunks {
		if _, err := stream.Write(chunk); err != nil {
			return
		}
	}
	stream.Close()
}

var message = make([]byte, 64)

func open(conn *spdystream.Connection, mode string) (*spdystream.Stream, error) {
	headers := http.Header{}
	headers.Set("x-mode", mode)
	stream, err := conn.CreateStream(headers, nil, false)
	if err != nil {
		return nil, err
	}
	return stream, stream.Wait()
}

func exchange(conn *spdystream.Connection, latencies *[]float64) error {
	started := time.Now()
	stream, err := open(conn, "echo")
	if err != nil {
		return err
	}
	if latencies != nil {
		*latencies = append(*latencies, float64(time.Since(started).Microseconds()))
	}
	if _, err := stream.Write(message); err != nil {
		return err
	}
	stream.Close()
	echoed, err := io.ReadAll(stream)
	if err != nil {
		return err
	}
	if len(echoed) != len(message) {
		return fmt.Errorf("echoed %d bytes of %d", len(echoed), len(message))
	}
	return nil
}

func bulk(conn *spdystream.Connection, total int) (float64, error) {
	started := time.Now()
	stream, err := open(conn, "sink")
	if err != nil {
		return 0, err
	}
	chunk := make([]byte, 1<<20)
	count := total / len(chunk)
	for i := 0; i < count; i++ {
		if _, err := stream.Write(chunk); err != nil {
			return 0, err
		}
	}
	stream.Close()
	answer, err := io.ReadAll(stream)
	if err != nil {
		return 0, err
	}
	if string(answer) != strconv.Itoa(count*len(chunk)) {
		return 0, fmt.Errorf("the sink counted %q", answer)
	}
	return float64(count*len(chunk)) / time.Since(started).Seconds() / 1e6, nil
}

func rate(conn *spdystream.Connection, total, workers int, latencies *[]float64) (float64, error) {
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
				if err := exchange(conn, latencies); err != nil {
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

func percentile(values []float64, fraction float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sort.Float64s(values)
	rank := int(fraction*float64(len(values)) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(values) {
		rank = len(values)
	}
	return values[rank-1]
}

func run(total, opens, concurrent int) (map[string]float64, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer listener.Close()
	go func() {
		for {
			raw, err := listener.Accept()
			if err != nil {
				return
			}
			conn, err := spdystream.NewConnection(raw, true)
			if err != nil {
				return
			}
			go conn.Serve(func(stream *spdystream.Stream) { go handle(stream) })
		}
	}()
	raw, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		return nil, err
	}
	conn, err := spdystream.NewConnection(raw, false)
	if err != nil {
		return nil, err
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	defer conn.Close()
	results := map[string]float64{}
	if err := exchange(conn, nil); err != nil {
		return nil, err
	}
	if results["bulk"], err = bulk(conn, total); err != nil {
		return nil, err
	}
	latencies := []float64{}
	if results["rate"], err = rate(conn, opens, 1, &latencies); err != nil {
		return nil, err
	}
	results["open_p50"] = percentile(latencies, 0.5)
	results["open_p99"] = percentile(latencies, 0.99)
	if results["rate_100"], err = rate(conn, concurrent, 100, nil); err != nil {
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
