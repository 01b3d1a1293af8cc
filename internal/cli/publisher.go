package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) publisherCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "publisher", Aliases: []string{"publishers"}, Short: "Manage extension publishers and their signing keys"}
	cmd.AddCommand(a.publisherCreateCommand(), a.publisherListCommand(), a.publisherRefreshCatalogCommand())
	return cmd
}

func (a *app) publisherCreateCommand() *cobra.Command {
	var keyFile, output string
	cmd := &cobra.Command{
		Use:   "create NAME [--key-file PATH]",
		Short: "Create a publisher: make its ed25519 key pair here and register the public key",
		Long: `Create an extension publisher. The ed25519 key pair is generated on this computer;
only the public key is sent to the control plane. The private key is written to
--key-file (default ./NAME.key, mode 0600, never overwritten): it signs every
catalog of the publisher with "corral extension publish", and a publisher's key
cannot be replaced once agents have pinned it, so keep it safe.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			name := args[0]
			if keyFile == "" {
				keyFile = name + ".key"
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			// The key is on disk before the public half is registered, so a
			// registered publisher always has its private key somewhere.
			if err := writePrivateKey(keyFile, priv); err != nil {
				return err
			}
			p, err := c.CreatePublisher(ctxOf(cmd), name, pub)
			var refused *wire.APIError
			switch {
			case errors.As(err, &refused) && refused.Status < http.StatusInternalServerError:
				// Refused: nothing was registered with this key.
				_ = os.Remove(keyFile)
				return err
			case err != nil:
				// The server may have registered the key before the answer
				// was lost; a registered key can never be replaced, so the
				// only copy of its private half is kept.
				return fmt.Errorf("%w\nThe publisher may or may not have been registered; its private key is kept in %s. "+
					"Check with \"corral publisher list\": if %s is listed, that file is its key; if not, delete the file and try again", err, keyFile, name)
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created publisher %s.\nIts private signing key is in %s (mode 0600): keep it secret and safe; it cannot be replaced.\n"+
				"Machines whose extensions.allowlist names %s's extensions trust it with (as root, on the machine):\n    corral-agent publisher trust %s %s\n",
				p.Name, keyFile, p.Name, p.Name, extpkg.FormatPublicKey(p.PublicKey))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "where to write the private key (default ./NAME.key; never overwritten)")
	addOutputFlag(cmd, &output)
	return cmd
}

// writePrivateKey writes priv as a PKCS#8 PEM file readable only by the
// caller, refusing to overwrite anything.
func writePrivateKey(path string, priv ed25519.PrivateKey) (err error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; choose another --key-file (an existing key is never overwritten)", path)
	}
	if err != nil {
		return fmt.Errorf("write the private key: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	return pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// readPrivateKey reads an ed25519 PKCS#8 PEM key written by "publisher create".
func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := capped.ReadFile(path, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("read the signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s is not a PEM private key (PKCS#8)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid PKCS#8 key", path)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 key", path)
	}
	return ek, nil
}

func (a *app) publisherListCommand() *cobra.Command {
	return listCommand(a, "List extension publishers", (*client.Client).ListPublishers, renderPublishers)
}

func renderPublishers(w io.Writer, output string, ps []wire.Publisher) error {
	return render(w, output, ps, []string{"NAME", "PUBLIC KEY", "CREATED", "CREATED BY"}, func(p wire.Publisher) []string {
		return []string{p.Name, extpkg.FormatPublicKey(p.PublicKey), formatTime(p.CreatedAt), p.CreatedBy}
	})
}

func (a *app) publisherRefreshCatalogCommand() *cobra.Command {
	var keyFile string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "refresh-catalog NAME --key KEYFILE [--validity DURATION]",
		Short: "Sign the publisher's current catalog again with a new expiry",
		Long: `Agents refuse an expired catalog. Sign the current one again (same packages, next
serial, a new expiry) before it expires; a version removed from the catalog stays removed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("key", keyFile); err != nil {
				return err
			}
			key, err := readPrivateKey(keyFile)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			pub, err := c.GetPublisher(ctxOf(cmd), args[0])
			if err != nil {
				return err
			}
			if !bytes.Equal(pub.PublicKey, key.Public().(ed25519.PublicKey)) {
				return fmt.Errorf("%s is not the signing key of publisher %s (its registered public key differs)", keyFile, pub.Name)
			}
			serial, err := a.signNextCatalog(cmd, c, pub, key, validity, func(*wire.Catalog) {})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Signed catalog serial %d of %s, valid until %s.\n", serial, pub.Name, a.now().Add(validity).UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the publisher's private key file (from corral publisher create)")
	cmd.Flags().DurationVar(&validity, "validity", wire.DefaultCatalogValidity, "how long the signed catalog stays valid for agents")
	return cmd
}
