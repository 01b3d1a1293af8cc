package storeopen

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dsn, kind, target string
		wantErr           bool
	}{
		{dsn: "postgres://u@h:5432/db?sslmode=disable", kind: "postgres", target: "postgres://u@h:5432/db?sslmode=disable"},
		{dsn: "postgresql://u@h/db", kind: "postgres", target: "postgresql://u@h/db"},
		{dsn: "POSTGRES://u@h/db", kind: "postgres", target: "POSTGRES://u@h/db"},
		{dsn: "sqlite:/var/lib/corral/corral.db", kind: "sqlite", target: "/var/lib/corral/corral.db"},
		{dsn: "sqlite:corral.db", kind: "sqlite", target: "corral.db"},
		{dsn: "sqlite:///var/lib/corral.db", kind: "sqlite", target: "/var/lib/corral.db"},
		{dsn: "/var/lib/corral/corral.db", kind: "sqlite", target: "/var/lib/corral/corral.db"},
		{dsn: "./data/corral.db", kind: "sqlite", target: "./data/corral.db"},
		{dsn: "corral.db", kind: "sqlite", target: "corral.db"},
		{dsn: "", wantErr: true},
		{dsn: "sqlite:", wantErr: true},
		{dsn: "mysql://root:secret@h/db", wantErr: true},
		{dsn: "mem:", wantErr: true},
	} {
		kind, target, err := Parse(tc.dsn)
		if tc.wantErr {
			if err == nil {
				t.Errorf("Parse(%q) = %q, %q; want an error", tc.dsn, kind, target)
			}
			continue
		}
		if err != nil || kind != tc.kind || target != tc.target {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q, nil", tc.dsn, kind, target, err, tc.kind, tc.target)
		}
	}
}

func TestParseKeepsPasswordsOutOfErrors(t *testing.T) {
	t.Parallel()
	_, _, err := Parse("mysql://root:hunter2@db/corral")
	if err == nil {
		t.Fatal("want an error for mysql://")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q leaks the password", err)
	}
}

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	st, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "corral.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}
