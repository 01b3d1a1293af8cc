package agentcli_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/agentcli"
	"github.com/corralhq/corral/internal/agent/protection"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/scan/sigset"
)

// installSet puts a signature set where endpoint protection installs it,
// and pins pinned as the trusted key.
func installSet(t *testing.T, state string, signer ed25519.PrivateKey, pinned ed25519.PublicKey, sigs string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "set.ndb")
	os.WriteFile(src, []byte(sigs), 0o644)
	set, _, _, err := sigset.Build(signer, 7, time.Now(), src)
	if err != nil {
		t.Fatal(err)
	}
	dir := protection.FeatureDir(state)
	os.MkdirAll(filepath.Join(dir, "signatures"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "signatures", "current.sigset"), set, 0o600); err != nil {
		t.Fatal(err)
	}
	pin, _ := json.Marshal(map[string]any{"key": []byte(pinned), "pinnedAt": time.Now()})
	os.WriteFile(filepath.Join(dir, "signature-key.json"), pin, 0o600)
}

// corral-agent scan uses the signature set endpoint protection installed,
// only when it verifies with the trusted key, and not with
// --no-signature-set.
func TestScanUsesTheInstalledSignatureSet(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	sig := "Installed.Marker:0:*:" + hex.EncodeToString([]byte("corral-installed-marker")) + "\n"
	target := filepath.Join(t.TempDir(), "marked.txt")
	os.WriteFile(target, []byte("xx corral-installed-marker xx"), 0o644)

	state := t.TempDir()
	installSet(t, state, priv, pub, sig)
	out, err := agent(t, "", "--state-dir", state, "scan", target, "-o", "json")
	var ee *agentcli.ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(out, "Installed.Marker") || !strings.Contains(out, `"signatureSet": 7`) {
		t.Errorf("scan with the installed set: %v\n%s", err, out)
	}
	if out, err := agent(t, "", "--state-dir", state, "scan", "--no-signature-set", target); err != nil || strings.Contains(out, "FOUND") {
		t.Errorf("scan --no-signature-set: %v\n%s", err, out)
	}
	// The key root configured wins over the pin: the set no longer verifies.
	if out, err := agent(t, "", "--state-dir", state, "config", "set", "protection.signaturekey", extpkg.FormatPublicKey(other.Public().(ed25519.PublicKey))); err != nil {
		t.Fatalf("config set: %v %s", err, out)
	}
	out, err = agent(t, "", "--state-dir", state, "scan", target)
	if err != nil || strings.Contains(out, "FOUND") || !strings.Contains(out, "the installed signature set was not used") {
		t.Errorf("scan with a set the configured key does not verify: %v\n%s", err, out)
	}

	// A set signed with another key than the pinned one is not used.
	bad := t.TempDir()
	installSet(t, bad, other, pub, sig)
	out, err = agent(t, "", "--state-dir", bad, "scan", target)
	if err != nil || strings.Contains(out, "FOUND") || !strings.Contains(out, "does not verify") {
		t.Errorf("scan with a set signed by another key: %v\n%s", err, out)
	}
}
