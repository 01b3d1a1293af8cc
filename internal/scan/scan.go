// Package scan is Corral's signature scanner: the engine of endpoint
// protection, usable without the server.
//
// Signatures come from ClamAV .hdb/.hsb/.ndb files imported as they are
// (Builder, LoadFiles) plus the built-in EICAR test signature. Hash
// signatures are looked up by size, then digest; body signatures go through
// an anchor prefilter and exact verification (see body.go for the design
// and why it is not Aho-Corasick). Each object is read once: the prefilter
// and any digest a signature of that size needs run chunk by chunk over the
// same bytes (mmap for large files, a pooled buffer for small ones).
// Archives (zip, tar, gzip, bzip2) are scanned inside within Limits; a
// member whose decompression ratio passes Limits.MaxRatio is reported as a
// decompression bomb (Kind "bomb") and not read further.
//
// Concurrency: a DB is immutable; an Engine is safe for concurrent use and
// Scan runs a worker pool sized to the cores. Failure: a file that cannot be
// read is reported in its FileResult and the scan goes on; Scan never
// follows a symbolic link found in a tree (one given as a root is followed)
// and never opens special files. Exclusions by SHA-256 (files restored from
// quarantine) drop detections of exactly those files.
package scan

import (
	"runtime"
	"time"
)

// Kinds of Finding.
const (
	KindSignature = "signature" // a signature matched
	KindBomb      = "bomb"      // an archive member decompresses past Limits.MaxRatio
)

// BombName is the signature name of a decompression bomb finding.
const BombName = "Corral.Heuristics.DecompressionBomb"

// Finding is one detection.
type Finding struct {
	Path         string `json:"path"`
	Member       string `json:"member,omitempty"` // path inside archives, levels joined with "!"
	Signature    string `json:"signature"`
	Kind         string `json:"kind"`
	SHA256       string `json:"sha256"`                 // of the file at Path
	MemberSHA256 string `json:"memberSha256,omitempty"` // of the archive member, when Member is set
}

// FileResult is what scanning one file found.
type FileResult struct {
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	Findings []Finding `json:"findings,omitempty"`
	// Error says why the file could not be scanned (unreadable, vanished);
	// the scan goes on.
	Error string `json:"error,omitempty"`
	// Skipped says why the file was deliberately not scanned (special file,
	// symbolic link leaving the tree, excluded path).
	Skipped string `json:"skipped,omitempty"`
	// Notes are limits reached and archives that could not be opened.
	Notes []string `json:"notes,omitempty"`
	// Excluded is set when detections were dropped because the file's
	// SHA-256 is on the exclusion list.
	Excluded bool `json:"excluded,omitempty"`
}

// Infected reports whether the result has findings.
func (r FileResult) Infected() bool { return len(r.Findings) > 0 }

// Limits bound the work spent inside archives of one scanned file.
type Limits struct {
	MaxDepth       int   // nested archive levels opened (default 8)
	MaxMembers     int   // members read per archive (default 10,000)
	MaxRatio       int64 // a member decompressing past this ratio is a bomb (default 200)
	RatioFloor     int64 // the ratio is judged only past this many bytes (default 1 MiB)
	MaxMemberBytes int64 // larger members are not scanned (default 64 MiB)
	MaxTotalBytes  int64 // decompressed bytes per scanned file (default 256 MiB)
}

// DefaultLimits are the limits of a zero Options.
var DefaultLimits = Limits{MaxDepth: 8, MaxMembers: 10_000, MaxRatio: 200, RatioFloor: 1 << 20,
	MaxMemberBytes: 64 << 20, MaxTotalBytes: 256 << 20}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxMembers > 0 {
		d.MaxMembers = l.MaxMembers
	}
	if l.MaxRatio > 0 {
		d.MaxRatio = l.MaxRatio
	}
	if l.RatioFloor > 0 {
		d.RatioFloor = l.RatioFloor
	}
	if l.MaxMemberBytes > 0 {
		d.MaxMemberBytes = l.MaxMemberBytes
	}
	if l.MaxTotalBytes > 0 {
		d.MaxTotalBytes = l.MaxTotalBytes
	}
	return d
}

// Options tune an Engine. The zero value is ready for use.
type Options struct {
	Limits Limits
	// Workers scanning files in parallel (default: the number of CPUs).
	Workers int
	// AllMatches keeps scanning a file after its first finding.
	AllMatches bool
	// ExcludeSHA256 reports whether detections of a file with this
	// lower-case hex SHA-256 are dropped (files restored from quarantine;
	// see quarantine.Exclusions). It is called only for detected files and
	// may be called concurrently.
	ExcludeSHA256 func(sha256 string) bool
	// ExcludePaths are path prefixes Scan does not enter (the quarantine).
	ExcludePaths []string
	// ScanPseudoFS makes Scan enter proc, sysfs, devtmpfs and the like,
	// which it skips by default.
	ScanPseudoFS bool
}

// Engine scans with one DB and Options.
type Engine struct {
	db  *DB
	opt Options
}

// New returns an Engine; db must not be nil.
func New(db *DB, opt Options) *Engine {
	opt.Limits = opt.Limits.withDefaults()
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	return &Engine{db: db, opt: opt}
}

// DB returns the engine's signature database.
func (e *Engine) DB() *DB { return e.db }

// Summary totals a Scan.
type Summary struct {
	Files    int64         `json:"files"`
	Bytes    int64         `json:"bytes"`
	Infected int64         `json:"infected"`
	Errors   int64         `json:"errors"`
	Skipped  int64         `json:"skipped"`
	Duration time.Duration `json:"duration"`
}
