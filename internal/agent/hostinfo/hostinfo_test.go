package hostinfo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCollectReadsUnderRoot(t *testing.T) {
	t.Parallel()
	root := writeTree(t, map[string]string{
		"etc/os-release":                "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\n# comment\n",
		"etc/hostname":                  "web-01\n",
		"etc/hosts":                     "127.0.0.1 localhost\n10.0.0.5 web-01.corp.example web-01 # main\n",
		"proc/sys/kernel/osrelease":     "6.1.0-18-amd64\n",
		"proc/cpuinfo":                  "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n",
		"proc/meminfo":                  "MemTotal:        8048576 kB\nMemFree: 1 kB\n",
		"sys/class/dmi/id/sys_vendor":   "Dell Inc.\n",
		"sys/class/dmi/id/product_name": "PowerEdge R650\n",
	})
	p := Host{Root: root}.Collect(context.Background())
	checks := []struct{ name, got, want string }{
		{"osName", p.OSName, "debian"}, {"osVersion", p.OSVersion, "12"}, {"pretty", p.OSPrettyName, "Debian GNU/Linux 12 (bookworm)"},
		{"kernel", p.Kernel, "6.1.0-18-amd64"}, {"hostname", p.Hostname, "web-01"}, {"fqdn", p.FQDN, "web-01.corp.example"},
		{"cpuModel", p.CPUModel, "AMD EPYC 7B13"}, {"manufacturer", p.Manufacturer, "Dell Inc."}, {"model", p.Model, "PowerEdge R650"},
		{"osType", p.OSType, "linux"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if p.CPUCount != 2 || p.MemoryBytes != 8048576*1024 {
		t.Errorf("cpu %d memory %d", p.CPUCount, p.MemoryBytes)
	}
}

func TestCollectOnAnEmptyRootLeavesFieldsEmpty(t *testing.T) {
	t.Parallel()
	p := Host{Root: t.TempDir()}.Collect(context.Background())
	if p.OSName != "" || p.Kernel != "" || p.CPUCount != 0 || p.MemoryBytes != 0 {
		t.Errorf("properties from nothing: %+v", p)
	}
}

func TestCollectRealHost(t *testing.T) {
	t.Parallel()
	p := Host{Root: "/"}.Collect(context.Background())
	if p.Hostname == "" || p.Kernel == "" || p.CPUCount == 0 || p.MemoryBytes == 0 {
		t.Errorf("real host inventory incomplete: %+v", p)
	}
}
