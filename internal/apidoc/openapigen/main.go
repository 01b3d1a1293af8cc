// Command openapigen writes the OpenAPI document of the control plane's API,
// generated from the server's route table and wire types exactly as the
// server serves it at /api/v1/openapi.json. `go generate ./...` runs it to
// refresh the checked-in api/openapi.json.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/server/httpapi"
)

func main() {
	out := flag.String("o", "", "write the document to this file (default: standard output)")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	doc, err := httpapi.New(httpapi.Deps{}).OpenAPIJSON()
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(doc)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".openapi-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(doc); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
