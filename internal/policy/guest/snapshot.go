package guest

import (
	"bufio"
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// snapshot caches what one evaluation reads, so rules sharing a file read
// it once. It is used by one goroutine.
type snapshot struct {
	env   Env
	files map[string]fileRead

	users    *accountDB
	groups   *accountDB
	packages *packageDB
	sshd     *sshdConfig
	sysctl   *sysctlConfig
	modprobe *modprobeConfig
	unitIdx  *unitIndex
}

type fileRead struct {
	data []byte
	err  error
}

func newSnapshot(env Env) *snapshot {
	if env.Root == "" {
		env.Root = "/"
	}
	return &snapshot{env: env, files: map[string]fileRead{}}
}

// read reads a file inside the root, once per snapshot.
func (s *snapshot) read(p string) ([]byte, error) {
	if f, ok := s.files[p]; ok {
		return f.data, f.err
	}
	b, err := s.env.readFile(p)
	s.files[p] = fileRead{b, err}
	return b, err
}

// forget drops cached state after a remediation wrote files.
func (s *snapshot) forget() {
	s.files = map[string]fileRead{}
	s.users, s.groups, s.packages, s.sshd, s.sysctl, s.modprobe, s.unitIdx = nil, nil, nil, nil, nil, nil, nil
}

// ---- /etc/passwd, /etc/group, /etc/shadow ----

type accountEntry struct {
	fields []string
	line   int
}

type accountDB struct {
	path    string
	entries []accountEntry
	err     error
}

func parseColonFile(p string, data []byte) []accountEntry {
	var out []accountEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, accountEntry{fields: strings.Split(line, ":"), line: n})
	}
	return out
}

func (s *snapshot) accounts(p string) *accountDB {
	b, err := s.read(p)
	db := &accountDB{path: p, err: err}
	if err == nil {
		db.entries = parseColonFile(p, b)
	}
	return db
}

func (s *snapshot) passwd() *accountDB {
	if s.users == nil {
		s.users = s.accounts("/etc/passwd")
	}
	return s.users
}

func (s *snapshot) group() *accountDB {
	if s.groups == nil {
		s.groups = s.accounts("/etc/group")
	}
	return s.groups
}

// lookupID resolves a user or group name (or a number) through the tree's
// own /etc/passwd or /etc/group.
func (db *accountDB) lookupID(name string) (int, bool) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, true
	}
	for _, e := range db.entries {
		if len(e.fields) > 2 && e.fields[0] == name {
			if id, err := strconv.Atoi(e.fields[2]); err == nil {
				return id, true
			}
		}
	}
	return 0, false
}

// nameOf returns the name for an id, or "" when the tree has none.
func (db *accountDB) nameOf(id int) string {
	for _, e := range db.entries {
		if len(e.fields) > 2 && e.fields[2] == strconv.Itoa(id) {
			return e.fields[0]
		}
	}
	return ""
}

func sortStrings(s []string) { sort.Strings(s) }
