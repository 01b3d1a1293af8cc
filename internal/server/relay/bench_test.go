package relay_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
)

// zeroServer accepts on 127.0.0.1 and writes n zero bytes to each
// connection, then closes it.
func zeroServer(b *testing.B, n int64) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		buf := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for left := n; left > 0; {
					k, err := c.Write(buf[:min(int64(len(buf)), left)])
					if err != nil {
						return
					}
					left -= int64(k)
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkTunnelThroughput moves 256 MiB from a port of the machine to the
// user through one tunnel (the agent and the server in this process, real
// TLS and HTTP/2 on loopback): the relay's own cost, without SSH.
func BenchmarkTunnelThroughput(b *testing.B) {
	const size = 256 << 20
	s := testutil.StartServer(b, func(c *server.Config) { c.DisconnectAfter = time.Minute })
	state := agenttest.ConnectAgent(b, s.API, "rg1", "web-01", "")
	port := zeroServer(b, size)
	c, err := localconfig.Load(state)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Set(localconfig.KeyIncomingPorts, strconv.Itoa(port)); err != nil {
		b.Fatal(err)
	}
	if err := localconfig.Save(state, c); err != nil {
		b.Fatal(err)
	}
	agenttest.StartAgent(b, daemon.Config{StateDir: state})
	testutil.Eventually(b, 15*time.Second, func() string {
		if st, _ := daemon.ReadStatus(state); !st.Connected {
			return "not connected"
		}
		return ""
	})
	admin := userClient(b, s.API, s.AdminToken(b))
	b.SetBytes(size)
	for b.Loop() {
		tun, err := admin.OpenStream(context.Background(), tunnelPath("rg1", "web-01", port))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, tun)
		tun.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}
