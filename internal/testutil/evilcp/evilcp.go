// Package evilcp is a malicious control plane for agent tests: it speaks the
// agent protocol (push stream, desired state, reports, catalogs, packages)
// over real mTLS, but serves whatever the test scripts — crafted desired
// states, catalogs signed with keys of its own, redirects to services only
// the machine can reach, absurd heartbeat intervals — so tests can prove
// that the local lock-down holds against a compromised server.
//
// It records every report and heartbeat it receives. It is safe for
// concurrent use.
package evilcp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/pki"
	"github.com/corralhq/corral/internal/wire"
)

// MachineID is the id of the machine Enroll creates.
const MachineID = "m-evil-1"

// Server is a malicious control plane.
type Server struct {
	URL   string
	CAPEM []byte
	// SealingKey is the enrolled machine's public sealing key.
	SealingKey []byte

	ca  *pki.CA
	srv *httptest.Server

	mu                sync.Mutex
	desired           wire.DesiredState
	catalogs          map[string]wire.SignedCatalog
	packages          map[string][]byte
	redirects         map[string]redirect
	heartbeatInterval time.Duration
	reports           []wire.Report
	heartbeats        int
	streams           map[chan struct{}]bool
	refusals          map[string]refusal
	attempts          map[string]int
}

// refusal answers every request to a path with a status and Retry-After.
type refusal struct {
	status     int
	retryAfter string
}

type redirect struct {
	location string
	status   int
}

// Start starts a malicious control plane on loopback, speaking HTTP/2.
func Start(t testing.TB) *Server { return start(t, false) }

// StartHTTP1 starts one that speaks only HTTP/1.1 (as behind an HTTP/1.1
// proxy): the agent must fall back to the WebSocket push channel.
func StartHTTP1(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, http1 bool) *Server {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := pki.LoadOrCreateCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.LoadOrCreateServerCert(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{CAPEM: ca.CertPEM(), ca: ca, catalogs: map[string]wire.SignedCatalog{}, packages: map[string][]byte{},
		redirects: map[string]redirect{}, streams: map[chan struct{}]bool{}, heartbeatInterval: 30 * time.Second,
		desired: wire.DesiredState{Generation: 1, ResourceID: "/subscriptions/evil/resourceGroups/evil/machines/m1"}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	s.srv.EnableHTTP2 = !http1
	s.srv.StartTLS()
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Enroll writes a machine identity issued by this control plane into the
// agent state directory, as `corral-agent connect` would.
func (s *Server) Enroll(t testing.TB, stateDir string) {
	t.Helper()
	keyPEM, csrPEM, err := machinekey.New("m1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, _, err := s.ca.SignMachineCSR(csrPEM, MachineID, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, err := sealing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s.SealingKey = pub
	st := identity.State{Server: s.URL, ResourceID: "/subscriptions/evil/resourceGroups/evil/machines/m1", MachineID: MachineID,
		SubscriptionID: "evil", ResourceGroup: "evil", Name: "m1", HeartbeatInterval: wire.Duration(30 * time.Second), ConnectedAt: time.Now().UTC()}
	if err := identity.Save(stateDir, st, keyPEM, certPEM, s.CAPEM, priv); err != nil {
		t.Fatal(err)
	}
}

// SetDesired serves ds (its generation replaced by the next one) and tells
// connected agents to fetch it.
func (s *Server) SetDesired(ds wire.DesiredState) {
	s.mu.Lock()
	ds.Generation = s.desired.Generation + 1
	if ds.ResourceID == "" {
		ds.ResourceID = s.desired.ResourceID
	}
	s.desired = ds
	for c := range s.streams {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// PutCatalog serves sc as publisher's catalog.
func (s *Server) PutCatalog(publisher string, sc wire.SignedCatalog) {
	s.mu.Lock()
	s.catalogs[strings.ToLower(publisher)] = sc
	s.mu.Unlock()
}

// PutPackage serves archive under its digest.
func (s *Server) PutPackage(archive []byte) string {
	d := extpkg.Digest(archive)
	s.mu.Lock()
	s.packages[d] = archive
	s.mu.Unlock()
	return d
}

// Redirect answers requests for path (an agent protocol path) with status
// (302, 307...) to location.
func (s *Server) Redirect(path, location string, status int) {
	s.mu.Lock()
	s.redirects[path] = redirect{location, status}
	s.mu.Unlock()
}

// SetHeartbeatInterval is the interval the next welcome asks for.
func (s *Server) SetHeartbeatInterval(d time.Duration) {
	s.mu.Lock()
	s.heartbeatInterval = d
	s.mu.Unlock()
}

// Heartbeats is how many heartbeats arrived.
func (s *Server) Heartbeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heartbeats
}

// Reports returns the bodies of the reports of kind received so far.
func (s *Server) Reports(kind string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, r := range s.reports {
		if r.Kind == kind {
			out = append(out, r.Body)
		}
	}
	return out
}

// ExtensionStatus is the latest status reported for extension name.
func (s *Server) ExtensionStatus(name string) (wire.ExtensionStatus, bool) {
	var last wire.ExtensionStatus
	found := false
	for _, b := range s.Reports(wire.ReportExtension) {
		var st wire.ExtensionStatus
		if json.Unmarshal(b, &st) == nil && st.Name == name {
			last, found = st, true
		}
	}
	return last, found
}

// RunResult is the final result reported for run name.
func (s *Server) RunResult(name string) (wire.RunCommandResult, bool) {
	for _, b := range s.Reports(wire.ReportRunCommand) {
		var r wire.RunCommandResult
		if json.Unmarshal(b, &r) == nil && r.Name == name && r.State != wire.RunRunning {
			return r, true
		}
	}
	return wire.RunCommandResult{}, false
}

// Refuse answers every request to path with status and, if not empty, a
// Retry-After header (an overloaded server); status 0 stops refusing.
func (s *Server) Refuse(path string, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = map[string]refusal{}
	}
	if status == 0 {
		delete(s.refusals, path)
		return
	}
	s.refusals[path] = refusal{status, retryAfter}
}

// Attempts counts the requests made to path, refused or not.
func (s *Server) Attempts(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[path]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rd, ok := s.redirects[r.URL.Path]
	ref, refused := s.refusals[r.URL.Path]
	if s.attempts == nil {
		s.attempts = map[string]int{}
	}
	s.attempts[r.URL.Path]++
	s.mu.Unlock()
	if refused {
		if ref.retryAfter != "" {
			w.Header().Set("Retry-After", ref.retryAfter)
		}
		writeJSON(w, ref.status, wire.ErrorResponse{Error: wire.ErrorBody{Code: "ServiceUnavailable", Message: "too many agents are connecting; try again later"}})
		return
	}
	if ok {
		http.Redirect(w, r, rd.location, rd.status)
		return
	}
	switch {
	case r.URL.Path == wire.PathStream:
		s.stream(w, r)
	case r.URL.Path == wire.PathChannel:
		s.channel(w, r)
	case r.URL.Path == wire.PathDesiredState:
		s.mu.Lock()
		ds := s.desired
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, ds)
	case r.URL.Path == wire.PathReports:
		var b wire.ReportBatch
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&b); err != nil {
			writeJSON(w, http.StatusBadRequest, wire.ErrorResponse{Error: wire.ErrorBody{Code: "BadRequest", Message: err.Error()}})
			return
		}
		ack := wire.ReportAck{Accepted: []string{}}
		s.mu.Lock()
		for _, rep := range b.Reports {
			s.reports = append(s.reports, rep)
			ack.Accepted = append(ack.Accepted, rep.ID)
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, ack)
	case strings.HasPrefix(r.URL.Path, wire.PathCatalogs):
		s.mu.Lock()
		sc, ok := s.catalogs[strings.ToLower(strings.TrimPrefix(r.URL.Path, wire.PathCatalogs))]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, wire.ErrorResponse{Error: wire.ErrorBody{Code: "NotFound", Message: "no such catalog"}})
			return
		}
		writeJSON(w, http.StatusOK, sc)
	case strings.HasPrefix(r.URL.Path, wire.PathPackages):
		s.mu.Lock()
		b, ok := s.packages[strings.TrimPrefix(r.URL.Path, wire.PathPackages)]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, wire.ErrorResponse{Error: wire.ErrorBody{Code: "NotFound", Message: "no such package"}})
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(b)
	default:
		writeJSON(w, http.StatusNotFound, wire.ErrorResponse{Error: wire.ErrorBody{Code: "NotFound", Message: "no route"}})
	}
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := r.Context()
	var hello wire.StreamMessage
	if err := wsjson.Read(ctx, conn, &hello); err != nil {
		return
	}
	sync := make(chan struct{}, 1)
	s.mu.Lock()
	welcome := wire.StreamMessage{Type: wire.MsgWelcome, ProtocolVersion: wire.ProtocolVersion, Generation: s.desired.Generation,
		HeartbeatInterval: wire.Duration(s.heartbeatInterval)}
	s.streams[sync] = true
	s.mu.Unlock()
	defer func() { s.mu.Lock(); delete(s.streams, sync); s.mu.Unlock() }()
	if err := wsjson.Write(ctx, conn, welcome); err != nil {
		return
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			var m wire.StreamMessage
			if err := wsjson.Read(context.WithoutCancel(ctx), conn, &m); err != nil {
				readErr <- err
				return
			}
			if m.Type == wire.MsgHeartbeat {
				s.mu.Lock()
				s.heartbeats++
				s.mu.Unlock()
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-readErr:
			return
		case <-sync:
			s.mu.Lock()
			gen := s.desired.Generation
			s.mu.Unlock()
			if err := wsjson.Write(ctx, conn, wire.StreamMessage{Type: wire.MsgSync, Generation: gen}); err != nil {
				return
			}
		}
	}
}

// channel serves the HTTP/2 push channel: JSON lines both ways.
func (s *Server) channel(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 2 {
		writeJSON(w, http.StatusUpgradeRequired, wire.ErrorResponse{Error: wire.ErrorBody{Code: "HTTP2Required", Message: "HTTP/2 only"}})
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	dec := json.NewDecoder(r.Body)
	var hello wire.StreamMessage
	if err := dec.Decode(&hello); err != nil {
		return
	}
	sync := make(chan struct{}, 1)
	s.mu.Lock()
	welcome := wire.StreamMessage{Type: wire.MsgWelcome, ProtocolVersion: wire.ProtocolVersion, Generation: s.desired.Generation,
		HeartbeatInterval: wire.Duration(s.heartbeatInterval)}
	s.streams[sync] = true
	s.mu.Unlock()
	defer func() { s.mu.Lock(); delete(s.streams, sync); s.mu.Unlock() }()
	write := func(m wire.StreamMessage) error {
		b, _ := json.Marshal(m)
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	}
	if write(welcome) != nil {
		return
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			var m wire.StreamMessage
			if err := dec.Decode(&m); err != nil {
				readErr <- err
				return
			}
			if m.Type == wire.MsgHeartbeat {
				s.mu.Lock()
				s.heartbeats++
				s.mu.Unlock()
			}
		}
	}()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-readErr:
			return
		case <-sync:
			s.mu.Lock()
			gen := s.desired.Generation
			s.mu.Unlock()
			if write(wire.StreamMessage{Type: wire.MsgSync, Generation: gen}) != nil {
				return
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Publisher signs catalogs and packages with a key of its own.
type Publisher struct {
	Name string
	Pub  ed25519.PublicKey
	Priv ed25519.PrivateKey
}

// NewPublisher makes a publisher with a fresh key.
func NewPublisher(t testing.TB, name string) *Publisher {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Publisher{Name: name, Pub: pub, Priv: priv}
}

// Key is the publisher's key as the desired state carries it.
func (p *Publisher) Key() wire.PublisherKey { return wire.PublisherKey{Name: p.Name, PublicKey: p.Pub} }

// Package builds a package of man (publisher and version from man), puts it
// on s and returns its catalog entry.
func (p *Publisher) Package(t testing.TB, s *Server, man wire.ExtensionManifest, files ...extpkg.File) wire.CatalogEntry {
	t.Helper()
	arc, err := extpkg.BuildArchive(&man, files...)
	if err != nil {
		t.Fatal(err)
	}
	d := s.PutPackage(arc)
	return wire.CatalogEntry{Type: man.Type, Version: man.Version, Digest: d, Size: int64(len(arc))}
}

// Catalog signs a catalog of entries with serial, valid until expires, and
// serves it on s.
func (p *Publisher) Catalog(t testing.TB, s *Server, serial int64, expires time.Time, entries ...wire.CatalogEntry) {
	t.Helper()
	sc, err := extpkg.SignCatalog(p.Priv, wire.Catalog{Publisher: p.Name, Serial: serial, IssuedAt: time.Now().UTC(),
		ExpiresAt: expires.UTC(), Packages: entries})
	if err != nil {
		t.Fatal(err)
	}
	s.PutCatalog(p.Name, sc)
}
