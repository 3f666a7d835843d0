// spdypeer: the real docker/spdystream (moby/spdystream) as a peer for the SPDY interop
// tests of streams.
//
//	spdypeer server ADDR [-upgrade]            echo server (the semantics of `streams echo`)
//	spdypeer client ADDR [-upgrade] [-streams K] [-bytes N]
//	                                           opens K streams, checks the echo by SHA-256,
//	                                           then refusal, reset and ping
//	spdypeer raw ADDR                          speaks frames with the vendored framer, to see
//	                                           what spdystream's API hides (SYN_REPLY headers,
//	                                           RST_STREAM status)
//
// Every handler reads and writes in separate goroutines: spdystream delivers a stream's data
// from a shared frame worker, so a handler that stops reading while it writes can stall the
// connection.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
	"github.com/moby/spdystream/spdy"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: spdypeer server|client|raw ADDR [flags]")
		os.Exit(2)
	}
	mode, addr := os.Args[1], os.Args[2]
	flags := flag.NewFlagSet(mode, flag.ExitOnError)
	upgrade := flags.Bool("upgrade", false, "start SPDY with the HTTP/1.1 upgrade")
	streams := flags.Int("streams", 4, "concurrent streams (client)")
	size := flags.Int("bytes", 1<<20, "bytes per stream (client)")
	flags.Parse(os.Args[3:])
	var err error
	switch mode {
	case "server":
		err = serve(addr, *upgrade)
	case "client":
		err = client(addr, *upgrade, *streams, *size)
	case "raw":
		err = raw(addr)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
	fmt.Println("DONE")
}

// ---- server ---------------------------------------------------------------------------

func serve(addr string, upgrade bool) error {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	if upgrade {
		return http.Serve(listener, http.HandlerFunc(upgradeHandler))
	}
	for {
		conn, err := listener.Accept()
		if err != nil {
			return err
		}
		go runServerConn(conn)
	}
}

func upgradeHandler(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "SPDY/3.1") ||
		!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
		http.Error(w, "upgrade to SPDY/3.1 required", http.StatusBadRequest)
		return
	}
	conn, buffered, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	buffered.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
	buffered.Flush()
	runServerConn(&bufferedConn{conn, buffered.Reader})
}

type bufferedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.reader.Read(p) }

func runServerConn(conn net.Conn) {
	session, err := spdystream.NewConnection(conn, true)
	if err != nil {
		fmt.Println("connection error", err)
		return
	}
	session.Serve(func(stream *spdystream.Stream) { go handle(session, stream) })
}

func handle(session *spdystream.Connection, stream *spdystream.Stream) {
	headers := stream.Headers()
	if headers.Get("x-reject") != "" {
		stream.Refuse()
		fmt.Printf("refused %d\n", stream.Identifier())
		return
	}
	reply := http.Header{}
	for name, values := range headers {
		for _, value := range values {
			reply.Add("x-echo-"+strings.ToLower(name), value)
		}
	}
	if err := stream.SendReply(reply, false); err != nil {
		return
	}
	if n := headers.Get("x-open-back"); n != "" {
		count, _ := strconv.Atoi(n)
		go openBack(session, count)
	}
	if headers.Get("x-go-closes-first") != "" {
		// half-close from this side first: write, FIN, then keep reading to the end
		stream.Write([]byte("go closes first"))
		stream.Close()
		received, err := io.Copy(io.Discard, stream)
		fmt.Printf("closed first %d: then read %d bytes (%v)\n", stream.Identifier(), received, err)
		return
	}
	limit := int64(-1)
	if text := headers.Get("x-reset-after"); text != "" {
		limit, _ = strconv.ParseInt(text, 10, 64)
	}
	chunks := make(chan []byte, 16)
	go func() {
		// the reading goroutine
		defer close(chunks)
		total := int64(0)
		for {
			buffer := make([]byte, 65536)
			want := len(buffer)
			if limit >= 0 && limit-total < int64(want) {
				want = int(limit - total)
			}
			if want == 0 {
				return
			}
			n, err := stream.Read(buffer[:want])
			if n > 0 {
				total += int64(n)
				chunks <- buffer[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	written := int64(0)
	for chunk := range chunks {
		if _, err := stream.Write(chunk); err != nil {
			return
		}
		written += int64(len(chunk))
	}
	if limit >= 0 && written >= limit {
		stream.Reset()
		fmt.Printf("reset %d after %d bytes\n", stream.Identifier(), written)
		return
	}
	stream.Close()
	fmt.Printf("echoed %d: %d bytes\n", stream.Identifier(), written)
}

// openBack opens streams towards the peer (the side that dialled) and checks their echo.
func openBack(session *spdystream.Connection, count int) {
	for i := 0; i < count; i++ {
		payload := []byte(fmt.Sprintf("from the go server %d", i))
		headers := http.Header{}
		headers.Set("x-from", "go")
		stream, err := session.CreateStream(headers, nil, false)
		if err == nil {
			err = stream.Wait()
		}
		if err == nil {
			err = exchange(stream, payload)
		}
		if err != nil {
			fmt.Printf("open-back %d FAILED: %v\n", i, err)
		} else {
			fmt.Printf("open-back %d ok\n", i)
		}
	}
}

// exchange sends payload, half-closes, and expects it echoed back, reading and writing in
// separate goroutines.
func exchange(stream *spdystream.Stream, payload []byte) error {
	done := make(chan error, 1)
	go func() {
		_, err := stream.Write(payload)
		if err == nil {
			err = stream.Close()
		}
		done <- err
	}()
	echoed, err := io.ReadAll(stream)
	if werr := <-done; werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(echoed, payload) {
		return fmt.Errorf("echo differs: %q", echoed)
	}
	return nil
}

// ---- client ---------------------------------------------------------------------------

func dial(addr string, upgrade bool) (net.Conn, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil || !upgrade {
		return conn, err
	}
	request := "POST /spdy HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"
	if _, err := conn.Write([]byte(request)); err != nil {
		return nil, err
	}
	reader := bufio.NewReader(conn)
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		return nil, err
	}
	if response.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade answered %s", response.Status)
	}
	return &bufferedConn{conn, reader}, nil
}

func client(addr string, upgrade bool, count, size int) error {
	conn, err := dial(addr, upgrade)
	if err != nil {
		return err
	}
	session, err := spdystream.NewConnection(conn, false)
	if err != nil {
		return err
	}
	// streams the server opens towards us are echoed
	go session.Serve(func(stream *spdystream.Stream) {
		stream.SendReply(http.Header{}, false)
		go func() {
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
				stream.Write(chunk)
			}
			stream.Close()
		}()
	})

	started := time.Now()
	var group sync.WaitGroup
	failures := make(chan error, count)
	for i := 0; i < count; i++ {
		group.Add(1)
		go func(index int) {
			defer group.Done()
			if err := hashedEcho(session, index, size); err != nil {
				failures <- fmt.Errorf("stream %d: %w", index, err)
			}
		}(i)
	}
	group.Wait()
	close(failures)
	for err := range failures {
		return err
	}
	elapsed := time.Since(started).Seconds()
	fmt.Printf("echo ok: %d streams x %d bytes in %.2f s (%.1f MB/s each way)\n",
		count, size, elapsed, float64(count*size)/elapsed/1e6)

	// refusal: spdystream reports it as a reset of the opening stream
	headers := http.Header{}
	headers.Set("x-reject", "1")
	stream, err := session.CreateStream(headers, nil, false)
	if err != nil {
		return err
	}
	if err := stream.Wait(); err != spdystream.ErrReset {
		return fmt.Errorf("a refused stream gave %v", err)
	}
	fmt.Println("refusal ok")

	// a reset by the server after N bytes looks like an end of file to spdystream's API
	headers = http.Header{}
	headers.Set("x-reset-after", "5")
	stream, err = session.CreateStream(headers, nil, false)
	if err == nil {
		err = stream.Wait()
	}
	if err != nil {
		return err
	}
	go stream.Write([]byte("0123456789"))
	got, _ := io.ReadAll(stream)
	if string(got) != "01234" {
		return fmt.Errorf("reset-after 5 delivered %q", got)
	}
	fmt.Println("server reset ok")

	// a reset from this side, then the session still works
	stream, err = session.CreateStream(http.Header{}, nil, false)
	if err == nil {
		err = stream.Wait()
	}
	if err != nil {
		return err
	}
	stream.Write([]byte("abandoned"))
	if err := stream.Reset(); err != nil {
		return err
	}
	if err := hashedEcho(session, 999, 1000); err != nil {
		return fmt.Errorf("after a reset: %w", err)
	}
	fmt.Println("client reset ok")

	rtt, err := session.Ping()
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	fmt.Printf("ping ok: %s\n", rtt)
	return session.CloseWait()
}

func hashedEcho(session *spdystream.Connection, index, size int) error {
	headers := http.Header{}
	headers.Set("x-stream", strconv.Itoa(index))
	stream, err := session.CreateStream(headers, nil, false)
	if err != nil {
		return err
	}
	if err := stream.Wait(); err != nil {
		return err
	}
	source := rand.New(rand.NewSource(int64(index)))
	sent := sha256.New()
	done := make(chan error, 1)
	go func() {
		buffer := make([]byte, 65536)
		remaining := size
		for remaining > 0 {
			chunk := buffer[:min(remaining, len(buffer))]
			source.Read(chunk)
			sent.Write(chunk)
			if _, err := stream.Write(chunk); err != nil {
				done <- err
				return
			}
			remaining -= len(chunk)
		}
		done <- stream.Close()
	}()
	received := sha256.New()
	total, err := io.Copy(received, stream)
	if werr := <-done; werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if total != int64(size) {
		return fmt.Errorf("echoed %d of %d bytes", total, size)
	}
	if !bytes.Equal(sent.Sum(nil), received.Sum(nil)) {
		return errors.New("the echo's SHA-256 differs")
	}
	return nil
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// ---- raw: frames, to see what the API hides -------------------------------------------

func raw(addr string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	framer, err := spdy.NewFramer(conn, conn)
	if err != nil {
		return err
	}
	frames := make(chan spdy.Frame, 64)
	go func() {
		defer close(frames)
		for {
			frame, err := framer.ReadFrame()
			if err != nil {
				fmt.Println("read ended:", err)
				return
			}
			frames <- frame
		}
	}()
	next := func(streamId spdy.StreamId) (spdy.Frame, error) {
		timeout := time.After(10 * time.Second)
		for {
			select {
			case frame, ok := <-frames:
				if !ok {
					return nil, errors.New("connection closed")
				}
				switch f := frame.(type) {
				case *spdy.SynReplyFrame:
					if f.StreamId == streamId {
						return f, nil
					}
				case *spdy.RstStreamFrame:
					if f.StreamId == streamId {
						return f, nil
					}
				case *spdy.DataFrame:
					if f.StreamId == streamId {
						return f, nil
					}
				case *spdy.HeadersFrame:
					if f.StreamId == streamId {
						return f, nil
					}
				}
			case <-timeout:
				return nil, errors.New("timed out waiting for a frame")
			}
		}
	}

	// 1: reply headers, multi-valued
	headers := http.Header{}
	headers["x-multi"] = []string{"one", "two"}
	headers["x-single"] = []string{"value"}
	if err := framer.WriteFrame(&spdy.SynStreamFrame{StreamId: 1, Headers: headers}); err != nil {
		return err
	}
	frame, err := next(1)
	if err != nil {
		return err
	}
	reply, ok := frame.(*spdy.SynReplyFrame)
	if !ok {
		return fmt.Errorf("stream 1: expected SYN_REPLY, got %#v", frame)
	}
	fmt.Printf("reply headers: x-echo-x-multi=%s x-echo-x-single=%s\n",
		strings.Join(reply.Headers["X-Echo-X-Multi"], ","), strings.Join(reply.Headers["X-Echo-X-Single"], ","))
	framer.WriteFrame(&spdy.DataFrame{StreamId: 1, Data: []byte("hello"), Flags: spdy.DataFlagFin})
	var echoed []byte
	for {
		frame, err := next(1)
		if err != nil {
			return err
		}
		data, ok := frame.(*spdy.DataFrame)
		if !ok {
			return fmt.Errorf("stream 1: expected data, got %#v", frame)
		}
		echoed = append(echoed, data.Data...)
		if data.Flags&spdy.DataFlagFin != 0 {
			break
		}
	}
	fmt.Printf("echo: %s\n", echoed)

	// 3: refusal carries REFUSED_STREAM
	headers = http.Header{}
	headers.Set("x-reject", "1")
	framer.WriteFrame(&spdy.SynStreamFrame{StreamId: 3, Headers: headers})
	for {
		frame, err := next(3)
		if err != nil {
			return err
		}
		if rst, ok := frame.(*spdy.RstStreamFrame); ok {
			fmt.Printf("refusal status: %d\n", rst.Status)
			break
		}
	}

	// 5: a reset by the server after 3 bytes carries a real status (never 0)
	headers = http.Header{}
	headers.Set("x-reset-after", "3")
	framer.WriteFrame(&spdy.SynStreamFrame{StreamId: 5, Headers: headers})
	if _, err := next(5); err != nil {
		return err
	}
	framer.WriteFrame(&spdy.DataFrame{StreamId: 5, Data: []byte("abcdef")})
	var before []byte
	for {
		frame, err := next(5)
		if err != nil {
			return err
		}
		if data, ok := frame.(*spdy.DataFrame); ok {
			before = append(before, data.Data...)
			continue
		}
		if rst, ok := frame.(*spdy.RstStreamFrame); ok {
			fmt.Printf("reset after %q: status %d\n", before, rst.Status)
			break
		}
	}

	// ping: the client's pings are odd
	framer.WriteFrame(&spdy.PingFrame{Id: 7})
	timeout := time.After(10 * time.Second)
	for {
		select {
		case frame, ok := <-frames:
			if !ok {
				return errors.New("connection closed before the ping's answer")
			}
			if ping, ok := frame.(*spdy.PingFrame); ok && ping.Id == 7 {
				fmt.Println("ping answered")
				framer.WriteFrame(&spdy.GoAwayFrame{LastGoodStreamId: 0, Status: spdy.GoAwayOK})
				return nil
			}
		case <-timeout:
			return errors.New("the ping was not answered")
		}
	}
}
