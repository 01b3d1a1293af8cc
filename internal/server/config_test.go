package server

import (
	"strings"
	"testing"
)

// Every bad setting is named in one error, so an operator fixes them all at
// once.
func TestConfigValidateNamesEveryMistake(t *testing.T) {
	t.Parallel()
	good := DefaultConfig()
	good.DataDir = t.TempDir()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults with a data dir: %v", err)
	}
	for _, u := range []string{"https://cp-2.internal:8443", "https://10.0.0.2:8443/", "https://[fd00::2]:8443"} {
		c := good
		c.AdvertiseURL = u
		if err := c.Validate(); err != nil {
			t.Errorf("--advertise-url %s: %v", u, err)
		}
	}
	bad := good
	bad.DataDir = ""
	bad.Listen = "8443"
	bad.TLSCertFile = "server.crt"
	bad.AdvertiseURL = "http://cp-2:8443"
	bad.AdminPassword = "short"
	err := bad.Validate()
	if err == nil {
		t.Fatal("a bad configuration validated")
	}
	for _, want := range []string{"--data-dir", "--listen", "--tls-cert and --tls-key", "--advertise-url", "12 characters"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	for _, u := range []string{"cp-2:8443", "https://", "https://cp-2:8443/path", "https://user@cp-2:8443", "https://cp-2:8443?x=1"} {
		c := good
		c.AdvertiseURL = u
		if c.Validate() == nil {
			t.Errorf("--advertise-url %q validated", u)
		}
	}
}
