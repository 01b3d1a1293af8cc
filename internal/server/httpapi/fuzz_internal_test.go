package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/wire"
)

// FuzzSkipToken: a $skipToken the server made reads back as the key it was
// made from, and any token a caller sends is either refused with a 400 or
// read as some key, never a failure of the server.
func FuzzSkipToken(f *testing.F) {
	for _, s := range []string{"", "m1", "rg0", "\x00", "\xff\xfe", "a/b", strings.Repeat("z", 300)} {
		f.Add(s, encodeSkipToken(s))
	}
	f.Add("", "!!")
	f.Add("", "cmcw=")
	f.Fuzz(func(t *testing.T, key, token string) {
		if got, err := decodeSkipToken(encodeSkipToken(key)); err != nil || got != key {
			t.Fatalf("skip token of %q reads back as %q (%v)", key, got, err)
		}
		r := httptest.NewRequest("GET", "/x", nil)
		q := r.URL.Query()
		q.Set("$skipToken", token)
		r.URL.RawQuery = q.Encode()
		p, err := pageFromQuery(r)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest {
				t.Fatalf("$skipToken %q refused with %v, want a 400", token, err)
			}
			return
		}
		if p.Limit != 100 {
			t.Fatalf("default page size %d, want 100", p.Limit)
		}
	})
}

// FuzzStreamRead: the HTTP/2 channel reads one JSON message per line,
// each at most maxStreamMessage bytes, whatever the agent writes; every
// message it returns came from a line within that bound and encodes back
// to an equivalent message.
func FuzzStreamRead(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","protocolVersion":3,"agentVersion":"2026.11.0"}` + "\n" + `{"type":"heartbeat"}` + "\n",
		`{"type":"pong","seq":7}`, "\n\n", `{"type":"heartbeat","agentVersion":"\u0000\u202e"}` + "\r\n",
		`{"type":`, "[1,2]\n", strings.Repeat("x", 600) + "\n", `{"type":"tunnel","tunnel":{"id":"a","port":22}}` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &h2Conn{r: bufio.NewReaderSize(bytes.NewReader(b), 512)}
		for range 1000 {
			msg, err := c.Read()
			if err != nil {
				if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "malformed message") || err.Error() == "message too large" {
					return
				}
				t.Fatalf("unexpected read error %v", err)
			}
			enc, err := json.Marshal(msg)
			if err != nil {
				t.Fatalf("message %+v does not encode: %v", msg, err)
			}
			var back wire.StreamMessage
			if err := json.Unmarshal(enc, &back); err != nil || back.Type != msg.Type || back.Seq != msg.Seq || back.AgentVersion != strings.ToValidUTF8(msg.AgentVersion, "\uFFFD") {
				t.Fatalf("message %+v encodes as %s, which reads back as %+v (%v)", msg, enc, back, err)
			}
		}
	})
}

// FuzzDecodeJSON: the strict body decoder, on representative request
// types. What it accepts is one JSON value without a NUL, whose fields the
// type knows, and which encodes back to a body it accepts again as the
// same value; what it refuses is a 4xx.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"tags":{"a":"b"}}`, `{"displayName":"sp3","expiresIn":"48h"}`, `{"name":"t3","expiresIn":"1h"}`,
		`{"principal":"admin","role":"Reader","scope":"/subscriptions/default"}`, `{"script":"echo hi","parameters":{"A":"1"},"timeout":"5m"}`,
		`{"publisher":"Corral","type":"RunCommand","settings":{"a":2}}`, `{"a":1}`, `{"tags":{}} {}`, `{"tags":{}}]`, ``, `null`,
		`{"tags":{"k":"v\u0000"}}`, `{"timeout":"-5m"}`, `{"timeout":1e400}`, "\xef\xbb\xbf{}",
	} {
		for typ := range uint8(5) {
			f.Add(typ, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		newV := []func() any{
			func() any { return new(wire.ResourceGroupCreate) },
			func() any { return new(wire.ServicePrincipalCreate) },
			func() any { return new(wire.RoleAssignmentCreate) },
			func() any { return new(wire.RunCommandCreate) },
			func() any { return new(wire.MachineExtensionSet) },
		}[int(typ)%5]
		v := newV()
		err := decodeBody(body, v)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.status > 499 {
				t.Fatalf("body %q refused with %v, want a 4xx", body, err)
			}
			return
		}
		if wire.NULInJSON(body) >= 0 {
			t.Fatalf("body %q with a NUL accepted", body)
		}
		if !json.Valid(body) {
			t.Fatalf("body %q accepted but is not one JSON value", body)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted value %+v does not encode: %v", v, err)
		}
		again := newV()
		if err := decodeBody(enc, again); err != nil {
			t.Fatalf("accepted value encodes as %s, which is refused: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("value encodes as %s, then as %s", enc, enc2)
		}
	})
}

func decodeBody(body []byte, v any) error {
	r := httptest.NewRequest("PUT", "/x", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return decodeJSON(httptest.NewRecorder(), r, 64<<10, v)
}

// FuzzLineSplitter: however the agent's bytes are cut into chunks, the
// detached channel sees the same lines as a whole read would give, and a
// line over the bound is refused.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("{\"type\":\"heartbeat\"}\n{\"type\":\"pong\"}\n"), []byte{3, 7, 1})
	f.Add([]byte("a\n\nbb\nccc"), []byte{1})
	f.Add(bytes.Repeat([]byte("x"), 70), []byte{10, 60})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		const max = 64
		l := lineSplitter{max: max}
		var got [][]byte
		var err error
		rest := data
		for i := 0; len(rest) > 0 && err == nil; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(int(cuts[i])+1, len(rest))
			}
			err = l.feed(rest[:n], func(line []byte) bool { got = append(got, bytes.Clone(line)); return true })
			rest = rest[n:]
		}
		want := bytes.Split(data, []byte("\n"))
		want = want[:len(want)-1] // the unfinished last line is not emitted
		tooLong := -1
		for i, w := range want {
			if len(w) > max {
				tooLong = i
				break
			}
		}
		if tooLong < 0 {
			if last := data[bytes.LastIndexByte(data, '\n')+1:]; len(last) > max {
				tooLong = len(want)
			}
		}
		if tooLong >= 0 {
			if err == nil {
				t.Fatalf("a line over %d bytes was taken: %q", max, got)
			}
			want = want[:tooLong]
		} else if err != nil {
			t.Fatalf("refused %q: %v", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d lines %q, want %d %q", len(got), got, len(want), want)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d = %q, want %q", i, got[i], want[i])
			}
		}
	})
}
