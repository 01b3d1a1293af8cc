// Package relay connects a user's byte stream (an SSH session) to a tunnel
// that a machine's agent opens over its own outbound connection, so a port
// of the machine is reachable with no inbound port open — whichever server
// replica the user and the agent reached.
//
// A tunnel, step by step:
//
//  1. The replica the user reached (the origin) registers the tunnel's id as
//     waiting and announces it: the Bus carries {machine, id, port, origin}
//     to the replica holding the agent's push channel (through PostgreSQL
//     NOTIFY with replicas, or directly with one server).
//  2. That replica remembers where the user waits and sends the agent a
//     MsgTunnel on its channel.
//  3. The agent judges the request under its local configuration, connects
//     127.0.0.1:port, and opens POST /agent/v1/tunnels/{id} on its HTTP/2
//     connection: its first line is the verdict (a refusal's reason), then
//     bytes.
//  4. If the user waits on this replica, the agent's stream is handed to the
//     waiting Open; otherwise this replica opens POST
//     /internal/v1/tunnels/{id} on the origin replica (authenticated with a
//     short-lived replica token) and splices the two.
//
// Every hop is an HTTP/2 stream, so sessions are multiplexed and flow
// controlled on connections that already exist, and one slow session never
// blocks another. The relay keeps only in-memory routing for tunnels being
// opened; a replica that dies takes its tunnels with it (their users and
// agents see the stream end).
package relay

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/wire"
)

// Conn is one side of a tunnel.
type Conn interface {
	io.Reader
	io.Writer
	// CloseWrite says nothing more will be written (half close).
	CloseWrite() error
	Close() error
}

// Bus announces a tunnel to the replica holding the machine's push channel.
type Bus interface {
	AnnounceTunnel(ctx context.Context, machineID string, t wire.TunnelRequest, origin string)
}

// Sender delivers a message on a machine's push channel if this replica
// holds it (push.Hub).
type Sender interface {
	Offer(machineID string, msg wire.StreamMessage) push.Delivery
	// Has says whether this replica holds machineID's channel.
	Has(machineID string) bool
}

// OpenTimeout bounds how long Open waits for the agent.
const OpenTimeout = 15 * time.Second

// PathInternal + tunnel id is where replicas hand each other tunnels.
const PathInternal = "/internal/v1/tunnels/"

// ErrRefused wraps the machine's refusal (its local configuration, nothing
// listening on the port).
var ErrRefused = errors.New("the machine refused the tunnel")

// ErrNoAnswer says the machine's agent did not open the tunnel in time (not
// connected, or too old to know tunnels).
var ErrNoAnswer = errors.New("the machine's agent did not answer")

// Relay routes tunnels. Use New.
type Relay struct {
	self   string // this replica's URL, as other replicas reach it
	bus    Bus
	hub    Sender
	tokens *authn.TokenIssuer
	peers  *http.Client
	clock  func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	waiting map[string]chan result // tunnels whose user waits here
	routes  map[string]route       // tunnels announced to an agent here
}

type result struct {
	conn Conn
	err  error
}

type route struct {
	machineID string
	origin    string
	expires   time.Time
}

// Config wires a Relay.
type Config struct {
	// Self is this replica's URL as the other replicas reach it.
	Self string
	// Bus announces tunnels to the other replicas; nil for a single server.
	Bus Bus
	Hub Sender
	// Tokens signs and checks the replica tokens (the key all replicas share).
	Tokens *authn.TokenIssuer
	// PeerTLS trusts the other replicas' server certificates (the shared CA).
	PeerTLS *tls.Config
	Clock   func() time.Time
	Logger  *slog.Logger
}

// New returns a Relay.
func New(c Config) *Relay {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	tr := &http.Transport{TLSClientConfig: c.PeerTLS, ForceAttemptHTTP2: true, IdleConnTimeout: 90 * time.Second}
	return &Relay{self: strings.TrimSuffix(c.Self, "/"), bus: c.Bus, hub: c.Hub, tokens: c.Tokens,
		peers: &http.Client{Transport: tr}, clock: c.Clock, log: c.Logger,
		waiting: map[string]chan result{}, routes: map[string]route{}}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// Open asks machineID's agent for a tunnel to its local port and waits for
// it (at most OpenTimeout). The returned Conn carries the bytes; closing it
// ends the tunnel. id names the tunnel (for the audit).
func (r *Relay) Open(ctx context.Context, machineID string, port int) (id string, c Conn, err error) {
	id = newID()
	ch := make(chan result, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}()
	// The bus only when another replica may hold the agent's channel: a
	// request for a channel held here needs no round trip through the
	// database (nor a listener that is up).
	if r.bus != nil && !r.hub.Has(machineID) {
		r.bus.AnnounceTunnel(ctx, machineID, wire.TunnelRequest{ID: id, Port: port}, r.self)
	} else {
		r.Announce(machineID, wire.TunnelRequest{ID: id, Port: port}, r.self)
	}
	t := time.NewTimer(OpenTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		return id, res.conn, res.err
	case <-t.C:
		return id, nil, fmt.Errorf("%w within %s (is the machine connected, with an agent recent enough?)", ErrNoAnswer, OpenTimeout)
	case <-ctx.Done():
		return id, nil, ctx.Err()
	}
}

// Announce is the bus delivering an announced tunnel to this replica: if it
// holds the machine's push channel, the agent is asked to open the tunnel
// and this replica remembers where its user waits.
func (r *Relay) Announce(machineID string, t wire.TunnelRequest, origin string) {
	r.mu.Lock()
	now := r.clock()
	for id, rt := range r.routes {
		if now.After(rt.expires) {
			delete(r.routes, id)
		}
	}
	r.routes[t.ID] = route{machineID: machineID, origin: origin, expires: now.Add(OpenTimeout + 5*time.Second)}
	r.mu.Unlock()
	d := r.hub.Offer(machineID, wire.StreamMessage{Type: wire.MsgTunnel, Tunnel: &t})
	if d == push.Queued {
		return
	}
	r.mu.Lock()
	delete(r.routes, t.ID)
	r.mu.Unlock()
	if d == push.Busy {
		// The user learns now rather than after OpenTimeout.
		verdict := wire.TunnelVerdict{Error: fmt.Sprintf("the machine's channel has %d tunnels waiting to open; try again in a moment", push.MaxPendingTunnels)}
		if origin == r.self {
			_ = r.deliver(context.Background(), t.ID, nil, verdict)
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), OpenTimeout)
			defer cancel()
			if err := r.forward(ctx, origin, t.ID, nil, verdict); err != nil {
				r.log.Warn("tell the origin replica a tunnel was refused", "tunnel", t.ID, "err", err)
			}
		}()
	}
}

// ErrUnknownTunnel is an agent presenting a tunnel id not announced to it.
var ErrUnknownTunnel = errors.New("no such tunnel is being opened for this machine")

// ServeAgent serves the agent's side of tunnel id (the agent of machineID
// authenticated it): its verdict first, then the bytes, handed to the user
// waiting here or to the origin replica. It returns when the tunnel ends.
func (r *Relay) ServeAgent(ctx context.Context, machineID, id string, agent Conn) error {
	r.mu.Lock()
	rt, ok := r.routes[id]
	if ok && rt.machineID == machineID {
		delete(r.routes, id)
	}
	r.mu.Unlock()
	if !ok || rt.machineID != machineID {
		return ErrUnknownTunnel
	}
	verdict, err := readVerdict(agent)
	if err != nil {
		verdict.Error = "the agent's answer was malformed: " + err.Error()
	}
	if rt.origin == r.self {
		return r.deliver(ctx, id, agent, verdict)
	}
	return r.forward(ctx, rt.origin, id, agent, verdict)
}

// readVerdict reads the agent's first line, byte by byte so that nothing of
// the stream after it is consumed.
func readVerdict(c io.Reader) (wire.TunnelVerdict, error) {
	var v wire.TunnelVerdict
	var line []byte
	b := make([]byte, 1)
	for len(line) < 4096 {
		if _, err := io.ReadFull(c, b); err != nil {
			return v, err
		}
		if b[0] == '\n' {
			return v, json.Unmarshal(line, &v)
		}
		line = append(line, b[0])
	}
	return v, errors.New("verdict line too long")
}

// deliver hands a tunnel (or its refusal) to the user waiting here, then
// waits for the tunnel to end.
func (r *Relay) deliver(ctx context.Context, id string, c Conn, verdict wire.TunnelVerdict) error {
	r.mu.Lock()
	ch, ok := r.waiting[id]
	r.mu.Unlock()
	if !ok {
		return ErrUnknownTunnel // the user gave up meanwhile
	}
	if verdict.Error != "" {
		ch <- result{err: fmt.Errorf("%w: %s", ErrRefused, verdict.Error)}
		return nil
	}
	done := make(chan struct{})
	ch <- result{conn: &endNotify{Conn: c, done: done}}
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// endNotify closes done when the user side closes the tunnel.
type endNotify struct {
	Conn
	once sync.Once
	done chan struct{}
}

func (e *endNotify) Close() error {
	err := e.Conn.Close()
	e.once.Do(func() { close(e.done) })
	return err
}

// forward opens the tunnel on the origin replica and splices it with the
// agent's side.
func (r *Relay) forward(ctx context.Context, origin, id string, agent Conn, verdict wire.TunnelVerdict) error {
	token, err := r.tokens.Issue(authn.Claims{Subject: "replica:" + r.self, PrincipalType: "Replica", Name: r.self,
		Restriction: "tunnel:" + id, ID: newID(), IssuedAt: r.clock(), ExpiresAt: r.clock().Add(time.Minute)})
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodPost, origin+PathInternal+id, pr)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	b, _ := json.Marshal(verdict)
	req.Header.Set("X-Corral-Tunnel-Verdict", string(b))
	resp, err := r.peers.Do(req)
	if err != nil {
		pw.Close()
		return fmt.Errorf("reach replica %s: %w", origin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		pw.Close()
		return fmt.Errorf("replica %s refused tunnel %s: HTTP %d", origin, id, resp.StatusCode)
	}
	if verdict.Error != "" {
		pw.Close()
		return nil
	}
	peer := &pipeConn{r: resp.Body, w: pw, closeAll: func() { cancel(); pw.Close(); resp.Body.Close() }}
	Splice(agent, peer, nil)
	return nil
}

// PeerHandler serves POST PathInternal{id}: another replica handing over
// the agent's side of a tunnel whose user waits here.
func (r *Relay) PeerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := strings.TrimPrefix(req.URL.Path, PathInternal)
		tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		c, err := r.tokens.Verify(tok, r.clock())
		if err != nil || c.PrincipalType != "Replica" || c.Restriction != "tunnel:"+id || req.Method != http.MethodPost || req.ProtoMajor < 2 {
			http.Error(w, "not a replica handing over this tunnel", http.StatusForbidden)
			return
		}
		var verdict wire.TunnelVerdict
		if v := req.Header.Get("X-Corral-Tunnel-Verdict"); v != "" {
			_ = json.Unmarshal([]byte(v), &verdict)
		}
		conn, err := Accept(w, req)
		if err != nil {
			return
		}
		_ = r.deliver(req.Context(), id, conn, verdict)
	})
}

// Accept turns an HTTP/2 request whose bodies stay open into a Conn: it
// answers 200 at once; the handler must not return before the Conn is done
// with (Wait).
func Accept(w http.ResponseWriter, req *http.Request) (*StreamConn, error) {
	if req.ProtoMajor < 2 {
		http.Error(w, "a tunnel needs HTTP/2", http.StatusUpgradeRequired)
		return nil, errors.New("HTTP/1.1")
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, err
	}
	return &StreamConn{r: req.Body, w: w, rc: rc, done: make(chan struct{})}, nil
}

// StreamConn is a tunnel side served by an HTTP/2 handler.
type StreamConn struct {
	r    io.ReadCloser
	w    http.ResponseWriter
	rc   *http.ResponseController
	mu   sync.Mutex
	once sync.Once
	done chan struct{}
}

func (s *StreamConn) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *StreamConn) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return 0, io.ErrClosedPipe
	default:
	}
	n, err := s.w.Write(p)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

// CloseWrite is a no-op: the response ends when the handler returns.
func (s *StreamConn) CloseWrite() error { return nil }

// Close ends the stream: the handler's Wait returns.
func (s *StreamConn) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.r.Close()
	})
	return nil
}

// Wait blocks until the stream is closed or ctx ends.
func (s *StreamConn) Wait(ctx context.Context) {
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

// pipeConn is a tunnel side made of a response body and a request pipe.
type pipeConn struct {
	r        io.ReadCloser
	w        *io.PipeWriter
	closeAll func()
	once     sync.Once
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) CloseWrite() error           { return p.w.Close() }
func (p *pipeConn) Close() error                { p.once.Do(p.closeAll); return nil }

// Counts are the bytes a splice moved each way.
type Counts struct {
	AToB, BToA int64
}

// Splice copies a to b and b to a until one side ends (its end of stream
// is passed on and then both are closed: a byte stream like SSH is over
// when either end hangs up) or fails. tee, if not nil, sees every chunk in
// order with its direction (a session recorder).
func Splice(a, b Conn, tee func(fromA bool, p []byte)) Counts {
	var c Counts
	var wg sync.WaitGroup
	copyDir := func(dst, src Conn, n *int64, fromA bool) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				if tee != nil {
					tee(fromA, buf[:k])
				}
				if _, werr := dst.Write(buf[:k]); werr != nil {
					a.Close()
					b.Close()
					return
				}
				*n += int64(k)
			}
			if err != nil {
				_ = dst.CloseWrite()
				a.Close()
				b.Close()
				return
			}
		}
	}
	wg.Add(2)
	go copyDir(b, a, &c.AToB, true)
	go copyDir(a, b, &c.BToA, false)
	wg.Wait()
	a.Close()
	b.Close()
	return c
}
