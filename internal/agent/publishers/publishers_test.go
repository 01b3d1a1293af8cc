package publishers

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/extpkg"
)

func key(t *testing.T) []byte {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func cfg(t *testing.T, kv ...string) localconfig.Effective {
	var c localconfig.Config
	for i := 0; i < len(kv); i += 2 {
		if err := c.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return c.Effective()
}

func TestResolve(t *testing.T) {
	t.Parallel()
	real, evil := key(t), key(t)
	now := time.Now()
	s := Open(t.TempDir())

	// Nothing configured or pinned, no allowlist: pinned on first use only.
	if _, err := s.Resolve(cfg(t), "Acme", real, false, now); !errors.Is(err, ErrUntrusted) {
		t.Errorf("resolve without pinning: %v", err)
	}
	if entries, _ := s.List(cfg(t)); len(entries) != 0 {
		t.Fatalf("something was pinned without an install: %+v", entries)
	}
	if k, err := s.Resolve(cfg(t), "Acme", real, true, now); err != nil || string(k) != string(real) {
		t.Fatalf("first use: %v", err)
	}
	// Pinned: another key (in any letter case of the name) is refused.
	if _, err := s.Resolve(cfg(t), "ACME", evil, true, now); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Errorf("another key for a pinned publisher: %v", err)
	}
	// An allowlisted publisher needs a configured key; the presented one,
	// even the pinned one, is not enough.
	allow := cfg(t, localconfig.KeyAllowlist, "Contoso/Agent")
	if _, err := s.Resolve(allow, "Contoso", real, true, now); err == nil || !strings.Contains(err.Error(), "publisher trust Contoso") {
		t.Errorf("allowlisted publisher without a key: %v", err)
	}
	configured := cfg(t, localconfig.KeyAllowlist, "Contoso/Agent", localconfig.KeyPublisherKeys, "Contoso="+extpkg.FormatPublicKey(real))
	if _, err := s.Resolve(configured, "contoso", evil, true, now); err == nil || !strings.Contains(err.Error(), "configured") {
		t.Errorf("a key different from the configured one: %v", err)
	}
	if k, err := s.Resolve(configured, "Contoso", real, true, now); err != nil || string(k) != string(real) {
		t.Errorf("the configured key: %v", err)
	}
	if entries, _ := s.List(configured); len(entries) != 2 || entries[0].Source != SourcePinned || entries[1].Source != SourceConfigured {
		t.Errorf("list: %+v", entries)
	}
	// Replay protection and forgetting.
	if err := s.SeeSerial("Acme", 5); err != nil {
		t.Fatal(err)
	}
	if err := s.SeeSerial("acme", 4); err == nil || !strings.Contains(err.Error(), "replay") {
		t.Errorf("an older serial: %v", err)
	}
	if ok, err := s.Forget("Acme"); !ok || err != nil {
		t.Fatalf("forget: %v %v", ok, err)
	}
	if _, err := s.Resolve(cfg(t), "Acme", evil, true, now); err != nil {
		t.Errorf("a new key after forget: %v", err)
	}
}
