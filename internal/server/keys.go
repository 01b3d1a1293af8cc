package server

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/server/authn"
)

// signingKey returns the Ed25519 key of one signing role: the file given
// with flag, which must exist, or dataDir/name, created on first start.
//
// A key given explicitly is never created: replicas share it, and one made
// here because the file was not copied yet would differ from the other
// replicas' key without a word — tokens issued by one replica refused by the
// others behind the load balancer, signature sets the agents refuse.
func signingKey(given, dataDir, name, flag, role string) (ed25519.PrivateKey, error) {
	path := given
	if path == "" {
		path = filepath.Join(dataDir, name)
	} else if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s: no such file; a key given with %s is never created, since replicas must share one: copy it from where it was made (docs/deploy.md)", flag, path, flag)
	}
	key, err := authn.LoadOrCreateSigningKey(path)
	if err != nil {
		return nil, fmt.Errorf("load %s %s: %w", role, path, err)
	}
	return key, nil
}
