package client

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzReadLine: the agent's push channel reads, whatever the server (or a
// proxy) sends, the lines of the stream in order, each within the bound,
// and refuses a longer one instead of growing without limit.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("{\"type\":\"sync\",\"generation\":3}\n{\"type\":\"ping\",\"seq\":1}\r\n"), uint16(64))
	f.Add(bytes.Repeat([]byte("x"), 100), uint16(16))
	f.Add([]byte("\n\n\r\n"), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		// The lines ended by "\n" lose it and a "\r" before it; a last
		// line without "\n" comes back as is.
		want := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		for i := range want {
			if i < len(want)-1 || strings.HasSuffix(string(data), "\n") {
				want[i] = strings.TrimSuffix(want[i], "\r")
			}
		}
		if len(data) == 0 {
			want = nil
		}
		for i := 0; ; i++ {
			line, err := readLine(r, int(max))
			if err == io.EOF {
				if i != len(want) {
					t.Fatalf("%d lines read from %q, want %d", i, data, len(want))
				}
				return
			}
			if err != nil {
				if len(want[i]) <= int(max) {
					t.Fatalf("line %d %q (max %d) refused: %v", i, want[i], max, err)
				}
				return
			}
			if len(line) > int(max) {
				t.Fatalf("line of %d bytes read with max %d", len(line), max)
			}
			if i >= len(want) || string(line) != want[i] {
				t.Fatalf("line %d is %q, want %q", i, line, want)
			}
		}
	})
}
