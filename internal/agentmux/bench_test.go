package agentmux_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkRoundTrip: one small request and answer (an agent's report and
// its acknowledgement) over agentmux and over HTTP/2 to the same server,
// one at a time and 16 at once on the one connection.
func BenchmarkRoundTrip(b *testing.B) {
	body := bytes.Repeat([]byte("r"), 512)
	ts := newServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":1}`))
	}), true)
	mux := ts.transport(b)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"agentmux", mux}, {"http2", mux.Fallback}} {
		hc := &http.Client{Transport: tc.rt}
		do := func(b *testing.B) {
			resp, err := hc.Post(ts.URL+"/report", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				do(b)
			}
		})
		b.Run(tc.name+"/parallel16", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					do(b)
				}
			})
		})
	}
}
