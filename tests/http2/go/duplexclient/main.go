// A full-duplex HTTP/2 client on golang.org/x/net/http2 (h2c with prior knowledge).
// It opens -streams concurrent POST requests, streams -bytes deterministic bytes up on
// each while reading the echo, and checks the echo's SHA-256 and the echoed headers.
// It prints "ok STREAMS BYTES" and exits 0 only if every stream was verified.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"golang.org/x/net/http2"
)

func payload(index int, size int) []byte {
	data := make([]byte, size)
	rand.New(rand.NewSource(int64(index))).Read(data)
	return data
}

func one(client *http.Client, url string, index int, size int) error {
	data := payload(index, size)
	want := sha256.Sum256(data)
	reader, writer := io.Pipe()
	request, err := http.NewRequest("POST", url, reader)
	if err != nil {
		return err
	}
	request.Header.Set("x-index", strconv.Itoa(index))
	request.ContentLength = -1
	go func() {
		source := bytes.NewReader(data)
		chunk := make([]byte, 256*1024)
		for {
			n, err := source.Read(chunk)
			if n > 0 {
				if _, werr := writer.Write(chunk[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				writer.Close()
				return
			}
		}
	}()
	response, err := client.Do(request)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	if response.StatusCode != 200 {
		return fmt.Errorf("status %d", response.StatusCode)
	}
	if got := response.Header.Get("x-echo-x-index"); got != strconv.Itoa(index) {
		return fmt.Errorf("x-echo-x-index is %q", got)
	}
	hash := sha256.New()
	n, err := io.Copy(hash, response.Body)
	if err != nil {
		return fmt.Errorf("after %d bytes: %v", n, err)
	}
	if n != int64(size) {
		return fmt.Errorf("echo has %d bytes, sent %d", n, size)
	}
	if !bytes.Equal(hash.Sum(nil), want[:]) {
		return fmt.Errorf("echo differs")
	}
	return nil
}

func main() {
	url := flag.String("url", "", "the echo server, http://HOST:PORT/")
	streams := flag.Int("streams", 100, "concurrent streams")
	size := flag.Int("bytes", 16<<20, "bytes per stream")
	frame := flag.Int("frame", 256<<10, "SETTINGS_MAX_FRAME_SIZE to ask for (16384 is Go's default)")
	flag.Parse()
	transport := &http2.Transport{
		AllowHTTP: true,
		// larger frames than the default 16 KiB: fewer frames to handle on both sides
		MaxReadFrameSize: uint32(*frame),
		DialTLS: func(network, address string, _ *tls.Config) (net.Conn, error) {
			return net.Dial(network, address)
		},
	}
	client := &http.Client{Transport: transport}
	var wait sync.WaitGroup
	errors := make([]error, *streams)
	for index := 0; index < *streams; index++ {
		wait.Add(1)
		go func(index int) {
			defer wait.Done()
			errors[index] = one(client, *url, index, *size)
		}(index)
	}
	wait.Wait()
	failed := 0
	for index, err := range errors {
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "stream %d: %v\n", index, err)
		}
	}
	if failed > 0 {
		fmt.Printf("failed %d of %d\n", failed, *streams)
		os.Exit(1)
	}
	fmt.Printf("ok %d %d\n", *streams, *size)
}
