// Package hostinfo reads the inventory of the host the agent runs on: OS,
// kernel, hostname, FQDN, IP addresses, CPU, memory and the DMI vendor
// strings. Every file is read under a root directory (corral-agent --root),
// so tests and `corral dev` point it at a prepared tree and nothing here ever
// writes. Missing files leave fields empty; inventory never fails the agent.
package hostinfo

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// Host reads a host through its root directory.
type Host struct {
	// Root is the host's root directory ("/" for the real host).
	Root string
}

// ReadFile reads a file under the root, capped at 1 MiB; inventory files are small.
func (h Host) ReadFile(p string) (string, error) {
	f, err := os.Open(filepath.Join(h.root(), p))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b), err
}

// Line reads the first line of a file under the root, trimmed; "" if missing.
func (h Host) Line(p string) string {
	s, _ := h.ReadFile(p)
	first, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first)
}

func (h Host) root() string {
	if h.Root == "" {
		return "/"
	}
	return h.Root
}

// IsRealRoot reports whether the host is the one this process runs on.
func (h Host) IsRealRoot() bool { return filepath.Clean(h.root()) == "/" }

// Collect returns the inventory. Environment and cloud metadata are left to
// the cloud package.
func (h Host) Collect(ctx context.Context) wire.MachineProperties {
	p := wire.MachineProperties{OSType: runtime.GOOS, Arch: runtime.GOARCH}
	osr := h.osRelease()
	p.OSName, p.OSVersion, p.OSPrettyName = osr["ID"], osr["VERSION_ID"], osr["PRETTY_NAME"]
	p.Kernel = h.Line("proc/sys/kernel/osrelease")
	p.Hostname = h.Line("etc/hostname")
	if h.IsRealRoot() || p.Hostname == "" {
		if hn, err := os.Hostname(); err == nil && (p.Hostname == "" || h.IsRealRoot()) {
			p.Hostname = hn
		}
	}
	p.FQDN = h.fqdn(ctx, p.Hostname)
	p.CPUCount, p.CPUModel = h.cpu()
	p.MemoryBytes = h.memory()
	p.Manufacturer = h.Line("sys/class/dmi/id/sys_vendor")
	p.Model = h.Line("sys/class/dmi/id/product_name")
	p.IPAddresses = ipAddresses()
	return p
}

// osRelease parses etc/os-release (or usr/lib/os-release).
func (h Host) osRelease() map[string]string {
	s, err := h.ReadFile("etc/os-release")
	if err != nil {
		s, _ = h.ReadFile("usr/lib/os-release")
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		out[k] = v
	}
	return out
}

// fqdn is the hostname's canonical name from etc/hosts under the root, or
// from the resolver for the real host; the short name when neither knows.
func (h Host) fqdn(ctx context.Context, hostname string) string {
	if hostname == "" || strings.Contains(hostname, ".") {
		return hostname
	}
	if hosts, err := h.ReadFile("etc/hosts"); err == nil {
		sc := bufio.NewScanner(strings.NewReader(hosts))
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			f := strings.Fields(line)
			if len(f) >= 2 && slices.Contains(f[1:], hostname) && strings.Contains(f[1], ".") {
				return f[1]
			}
		}
	}
	if h.IsRealRoot() {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if cname, err := net.DefaultResolver.LookupCNAME(ctx, hostname); err == nil {
			if c := strings.TrimSuffix(cname, "."); strings.Contains(c, ".") {
				return c
			}
		}
	}
	return hostname
}

func (h Host) cpu() (count int, model string) {
	s, _ := h.ReadFile("proc/cpuinfo")
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			count++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	if count == 0 && h.IsRealRoot() {
		count = runtime.NumCPU()
	}
	return count, model
}

func (h Host) memory() uint64 {
	s, _ := h.ReadFile("proc/meminfo")
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// ipAddresses lists the global unicast addresses of the interfaces that are
// up (the network is not under --root: it is the namespace's own).
func ipAddresses() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			out = append(out, ipn.IP.String())
		}
	}
	slices.Sort(out)
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}
