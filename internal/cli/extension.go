package cli

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) extensionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "extension", Aliases: []string{"extensions"}, Short: "Pack, publish and list extension packages"}
	cmd.AddCommand(a.extensionPackCommand(), a.extensionPublishCommand(), a.extensionListAvailableCommand())
	return cmd
}

func (a *app) extensionPackCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "pack DIR --output FILE",
		Short: "Pack a directory with manifest.json at its root into a package archive (tar.gz)",
		Long: `Pack a directory into an extension package: a gzip-compressed tar archive of its
regular files, with manifest.json at the root. Symbolic links and special files
are refused, since the agent would refuse them too. The manifest is validated, and
a handler that runs a file of the package ("./handler.sh install") needs that file
in the directory, executable. docs/extensions.md describes the format.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("output", output); err != nil {
				return err
			}
			archive, files, err := packDir(args[0])
			if err != nil {
				return err
			}
			man, err := extpkg.ReadManifest(archive)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(output, archive, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Packed %s/%s %s into %s: %d files, %d bytes, digest %s\n",
				man.Publisher, man.Type, man.Version, output, files, len(archive), extpkg.Digest(archive))
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "the package file to write (required)")
	return cmd
}

// packDir reads every regular file under dir, refusing links and special
// files, and packs them in name order.
func packDir(dir string) ([]byte, int, error) {
	if _, err := os.Stat(filepath.Join(dir, wire.ManifestFile)); err != nil {
		return nil, 0, fmt.Errorf("%s has no %s at its root", dir, wire.ManifestFile)
	}
	var files []extpkg.File
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link; packages hold only regular files and directories", p)
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		if total > wire.MaxUnpackedBytes || len(files) >= wire.MaxPackageFiles {
			return fmt.Errorf("%s holds more than %d bytes or %d files, the most a package may unpack to", dir, wire.MaxUnpackedBytes, wire.MaxPackageFiles)
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, extpkg.File{Name: filepath.ToSlash(rel), Body: body, Mode: int64(info.Mode().Perm())})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	archive, err := extpkg.BuildArchive(nil, files...)
	if err != nil {
		return nil, 0, err
	}
	man, err := extpkg.ReadManifest(archive)
	if err != nil {
		return nil, 0, err
	}
	modes := map[string]int64{}
	for _, f := range files {
		modes[f.Name] = f.Mode
	}
	if err := extpkg.CheckHandlerFiles(man, modes); err != nil {
		return nil, 0, err
	}
	if len(archive) > wire.MaxPackageBytes {
		return nil, 0, fmt.Errorf("the package would be %d bytes, more than the %d allowed", len(archive), wire.MaxPackageBytes)
	}
	return archive, len(files), nil
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".corral-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (a *app) extensionPublishCommand() *cobra.Command {
	var pkgFile, keyFile, output string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "publish --package FILE --key KEYFILE [--catalog-validity DURATION]",
		Short: "Upload a package and list it in its publisher's signed catalog",
		Long: `Publish an extension package: upload the archive, then fetch the publisher's
current catalog (verified with the registered key), add or replace the package's
entry, sign the next catalog with KEYFILE and upload it. The publisher is the one
the package's manifest names; KEYFILE must be its key from "corral publisher create".

The signed catalog expires after --catalog-validity (default one year, at most three):
agents refuse an expired catalog, so sign it again before then with
"corral publisher refresh-catalog".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("package", pkgFile); err != nil {
				return err
			}
			if err := requireFlag("key", keyFile); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			archive, err := capped.ReadFile(pkgFile, wire.MaxPackageBytes)
			if err != nil {
				return err
			}
			man, err := extpkg.ReadManifest(archive)
			if err != nil {
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
			ctx := ctxOf(cmd)
			pub, err := c.GetPublisher(ctx, man.Publisher)
			if err != nil {
				return err
			}
			if !bytes.Equal(pub.PublicKey, key.Public().(ed25519.PublicKey)) {
				return fmt.Errorf("%s is not the signing key of publisher %s (its registered public key differs)", keyFile, pub.Name)
			}
			pkg, err := c.UploadPackage(ctx, pub.Name, archive)
			if err != nil {
				return err
			}
			entry := wire.CatalogEntry{Type: pkg.Type, Version: pkg.Version, Digest: pkg.Digest, Size: pkg.Size}
			serial, err := a.signNextCatalog(cmd, c, pub, key, validity, func(cat *wire.Catalog) {
				for i, e := range cat.Packages {
					if strings.EqualFold(e.Type, pkg.Type) && e.Version == pkg.Version {
						cat.Packages[i] = entry
						return
					}
				}
				cat.Packages = append(cat.Packages, entry)
			})
			if err != nil {
				return err
			}
			pkg.Listed = true
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), pkg)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Published %s/%s %s (%s, %d bytes) and listed it in catalog serial %d.\n",
				pkg.Publisher, pkg.Type, pkg.Version, pkg.Digest, pkg.Size, serial)
			return nil
		},
	}
	cmd.Flags().StringVar(&pkgFile, "package", "", "the package archive (from corral extension pack)")
	cmd.Flags().StringVar(&keyFile, "key", "", "the publisher's private key file (from corral publisher create)")
	cmd.Flags().DurationVar(&validity, "catalog-validity", wire.DefaultCatalogValidity, "how long the signed catalog stays valid for agents")
	addOutputFlag(cmd, &output)
	return cmd
}

// signNextCatalog fetches the publisher's current catalog (verified with
// its registered key), applies change, signs the next serial valid for
// validity and uploads it, retrying if another publish raced it.
func (a *app) signNextCatalog(cmd *cobra.Command, c *client.Client, pub wire.Publisher, key ed25519.PrivateKey, validity time.Duration, change func(*wire.Catalog)) (int64, error) {
	if validity <= 0 || validity > wire.MaxCatalogValidity {
		return 0, fmt.Errorf("--catalog-validity must be between 1s and %s, not %s", wire.MaxCatalogValidity, validity)
	}
	ctx := ctxOf(cmd)
	var lastErr error
	for range 3 {
		cat := wire.Catalog{Publisher: pub.Name}
		sc, err := c.GetCatalog(ctx, pub.Name)
		switch {
		case client.IsNotFound(err):
		case err != nil:
			return 0, err
		default:
			cat, err = extpkg.VerifyCatalog(pub.PublicKey, pub.Name, sc)
			if err != nil {
				return 0, fmt.Errorf("the current catalog of %s does not verify with its registered key: %w", pub.Name, err)
			}
		}
		change(&cat)
		cat.Serial++
		cat.IssuedAt = a.now().UTC()
		cat.ExpiresAt = cat.IssuedAt.Add(validity)
		next, err := extpkg.SignCatalog(key, cat)
		if err != nil {
			return 0, err
		}
		lastErr = c.PutCatalog(ctx, pub.Name, next)
		if lastErr == nil {
			return cat.Serial, nil
		}
		if !client.IsConflict(lastErr) {
			return 0, lastErr
		}
	}
	return 0, fmt.Errorf("the catalog kept changing while publishing; try again: %w", lastErr)
}

func (a *app) extensionListAvailableCommand() *cobra.Command {
	var publisher, typ, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "list-available [--publisher P] [--type T] [--all]",
		Short: "List extension packages that can be installed (listed in their publisher's signed catalog)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ps, err := c.ListExtensionPackages(ctxOf(cmd), publisher, typ)
			if err != nil {
				return err
			}
			shown := []wire.ExtensionPackage{}
			for _, p := range ps {
				if all || p.Listed {
					shown = append(shown, p)
				}
			}
			return renderPackages(cmd.OutOrStdout(), output, shown)
		},
	}
	cmd.Flags().StringVar(&publisher, "publisher", "", "only this publisher")
	cmd.Flags().StringVar(&typ, "type", "", "only this type")
	cmd.Flags().BoolVar(&all, "all", false, "also show uploaded packages that are not listed in a signed catalog")
	addOutputFlag(cmd, &output)
	return cmd
}

func renderPackages(w io.Writer, output string, ps []wire.ExtensionPackage) error {
	return render(w, output, ps, []string{"PUBLISHER", "TYPE", "VERSION", "LISTED", "SIZE", "DIGEST", "PUBLISHED"}, func(p wire.ExtensionPackage) []string {
		listed := "yes"
		if !p.Listed {
			listed = "no"
		}
		return []string{p.Publisher, p.Type, p.Version, listed, fmt.Sprint(p.Size), shortDigest(p.Digest), formatTime(p.PublishedAt)}
	})
}

// shortDigest keeps a digest readable in a table: "sha256:" + 12 hex digits.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
