package jit_test

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/jit"
)

// BenchmarkGrantToOpen measures a grant request to the first accepted
// connection: the netlink batch, then a TCP handshake from the granted
// source over the veth pair. It reports p50 and p99; the grant is revoked
// between iterations (not timed).
func BenchmarkGrantToOpen(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	target := netip.AddrPortFrom(mach4, ssh.Number).String()
	var grant, open []time.Duration
	b.ResetTimer()
	for b.Loop() {
		var granted, connected time.Duration
		err := e.outside.Do(func() error {
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: outA.AsSlice()}}
			start := time.Now()
			if _, err := e.m.Grant(ctx, jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Minute}); err != nil {
				return err
			}
			granted = time.Since(start)
			c, err := d.Dial("tcp", target)
			if err != nil {
				return err
			}
			connected = time.Since(start)
			c.Close()
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		grant, open = append(grant, granted), append(open, connected)
		if _, err := e.m.Revoke(ctx, outA, ssh); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	report(b, "grant", grant)
	report(b, "open", open)
}

func report(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	p := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	b.ReportMetric(float64(p(0.50).Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(p(0.99).Microseconds()), name+"-p99-µs")
	b.Logf("%s: n=%d p50=%s p99=%s max=%s", name, len(ds), p(0.50), p(0.99), ds[len(ds)-1])
}
