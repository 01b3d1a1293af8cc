package cli

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/corralhq/corral/internal/auditchain"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// TestActivityChainFindsTampering edits and deletes activity rows directly
// in the database, as someone with access to it would, and checks that
// `corral activity verify` names the first broken entry — on SQLite and on
// PostgreSQL.
func TestActivityChainFindsTampering(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		s := testutil.StartServer(t)
		db, err := sql.Open("sqlite", filepath.Join(s.DataDir, "corral.db")+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tamperAndVerify(t, s, func(q string, args ...any) {
			t.Helper()
			if _, err := db.Exec(q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}, "?")
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testutil.PostgresDSN(t)
		s := testutil.StartServer(t, testutil.WithStore(dsn))
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		tamperAndVerify(t, s, func(q string, args ...any) {
			t.Helper()
			if _, err := conn.Exec(t.Context(), q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}, "$1")
	})
}

func tamperAndVerify(t *testing.T, s *testutil.Server, exec func(q string, args ...any), param string) {
	isolate(t)
	mustRun(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)
	for _, g := range []string{"a", "b", "c", "d"} {
		mustRun(t, "", "group", "create", "chain-"+g)
	}
	verify := func(args ...string) (verifyResult, error) {
		t.Helper()
		out, _, err := run(t, "", append([]string{"activity", "verify", "-o", "json"}, args...)...)
		var res verifyResult
		if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
			t.Fatalf("verify -o json printed %q (%v): %v", out, err, jerr)
		}
		return res, err
	}
	var head wire.ChainLink
	testutil.Eventually(t, 30*time.Second, func() string {
		res, err := verify()
		if err != nil || res.Head.Seq < 5 { // the sign-in and four groups at least
			return fmt.Sprintf("verify: %v, head %d", err, res.Head.Seq)
		}
		head = res.Head
		return ""
	})
	anchor := head.String()
	if res, err := verify("--anchor", anchor); err != nil || !res.OK {
		t.Fatalf("verify with the current head as anchor: %v %+v", err, res)
	}
	out := mustRun(t, "", "activity", "verify")
	if !strings.Contains(out, "The activity chain holds") || !strings.Contains(out, "--anchor") {
		t.Errorf("verify's report:\n%s", out)
	}

	// A message rewritten: that entry is named.
	exec("UPDATE activity SET message = 'nothing happened here' WHERE seq = 3")
	res, err := verify()
	if err == nil || res.OK || !strings.Contains(res.Break, "entry 3 ") || !strings.Contains(res.Break, "changed after it was sealed") {
		t.Errorf("verify after an edit: %v %+v", err, res)
	}
	if _, _, err := run(t, "", "activity", "verify"); err == nil || !strings.Contains(err.Error(), "breaks at entry 3") {
		t.Errorf("verify (table) after an edit: %v", err)
	}

	// An entry deleted: the gap is named (the edit above is found first,
	// so check from a chain where only the deletion breaks it).
	exec("DELETE FROM activity WHERE seq <= 3")
	exec("UPDATE activity_chain SET base_seq = 3, base_hash = (SELECT prev_hash FROM activity WHERE seq = 4)")
	if res, err := verify(); err != nil || !res.OK {
		t.Fatalf("a purge-like cut (base moved) should verify: %v %+v", err, res)
	}
	exec("DELETE FROM activity WHERE seq = "+param, 5)
	res, err = verify()
	if err == nil || !strings.Contains(res.Break, "entry 5") || !strings.Contains(res.Break, "deleted") {
		t.Errorf("verify after a deletion: %v %+v", err, res)
	}
	// An anchor before the chain's base cannot be proven.
	if _, _, err := run(t, "", "activity", "verify", "--anchor", "2:"+strings.Repeat("ab", 32)); err == nil {
		t.Error("an anchor that is not in the chain verified")
	}
	for _, bad := range []string{"x", "5", "5:abc", "0:" + strings.Repeat("ab", 32), "-1:" + strings.Repeat("ab", 32)} {
		if _, _, err := run(t, "", "activity", "verify", "--anchor", bad); err == nil || !strings.Contains(err.Error(), "invalid --anchor") {
			t.Errorf("--anchor %q: %v", bad, err)
		}
	}
}

// An export is every entry of the range, oldest first, in the form the
// API gives (JSON Lines verifies as a chain segment), or CSV that a
// spreadsheet does not run.
func TestActivityExport(t *testing.T) {
	dir := isolate(t)
	s := testutil.StartServer(t)
	from := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	mustRun(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)
	for _, g := range []string{"a", "b", "c"} {
		mustRun(t, "", "group", "create", "export-"+g)
	}
	to := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	testutil.Eventually(t, 30*time.Second, func() string {
		out := mustRun(t, "", "activity", "export", "--from", from.Format(time.RFC3339), "--to", to)
		if strings.Contains(out, `"hash":""`) || strings.Count(out, `"hash":`) < 4 {
			return "not all entries sealed yet"
		}
		return ""
	})
	out := mustRun(t, "", "activity", "export", "--from", from.Format(time.RFC3339), "--to", to, "--format", "jsonl")
	var es []wire.ActivityEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e wire.ActivityEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		es = append(es, e)
	}
	if len(es) < 4 {
		t.Fatalf("exported %d entries", len(es))
	}
	v := auditchain.NewVerifier(wire.ChainLink{Seq: es[0].Seq - 1, Hash: es[0].PrevHash})
	for i, e := range es {
		if i > 0 && e.Time.Before(es[i-1].Time) {
			t.Errorf("entry %d is older than the one before it", i)
		}
		if err := v.Add(e); err != nil {
			t.Errorf("the export does not verify as a chain segment: %v", err)
		}
	}
	file := filepath.Join(dir, "audit.csv")
	_, stderr, err := run(t, "", "activity", "export", "--from", from.Format(time.RFC3339), "--to", to, "--format", "csv", "--output-file", file)
	if err != nil || !strings.Contains(stderr, "Exported") {
		t.Fatalf("export to a file: %v %s", err, stderr)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", st, err)
	}
	b, _ := os.ReadFile(file)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != len(es)+1 || rows[0][0] != "seq" {
		t.Errorf("csv: %d rows, %v", len(rows), err)
	}
	// Never overwritten; bad input named.
	if _, _, err := run(t, "", "activity", "export", "--from", from.Format(time.RFC3339), "--to", to, "--output-file", file); err == nil {
		t.Error("an export overwrote an existing file")
	}
	for _, args := range [][]string{
		{"--to", to},
		{"--from", "yesterday", "--to", to},
		{"--from", from.Format(time.RFC3339), "--to", to, "--format", "xml"},
		{"--from", to, "--to", from.Format(time.RFC3339)},
	} {
		if _, _, err := run(t, "", append([]string{"activity", "export"}, args...)...); err == nil {
			t.Errorf("export %v succeeded", args)
		}
	}
}

func TestCSVCellsAreNotFormulas(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	n, err := exportActivity(&b, "csv", func(fn func(wire.ActivityEntry) error) error {
		return fn(wire.ActivityEntry{ID: "1", Caller: "=HYPERLINK(\"http://x\")", Message: "+1", Action: "@SUM(A1)", Scope: "-2", Path: "ok"})
	})
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	rows, _ := csv.NewReader(&b).ReadAll()
	for _, cell := range rows[1] {
		if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
			t.Errorf("cell %q would run as a formula", cell)
		}
	}
}
