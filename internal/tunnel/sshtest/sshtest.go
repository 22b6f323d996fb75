// Package sshtest is an in-process SSH server for tests: a bastion on
// loopback that accepts one public key and forwards "direct-tcpip" channels
// (what `ssh -L` and tunnel.Dial open) to TCP addresses.
//
// Targets maps the addresses clients ask for to the addresses really dialed,
// so a test can give the database a name that only the bastion knows. Close
// stops the server and drops every connection, like a killed bastion; Start
// with the Addr and HostKey of a closed server brings it back.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Options configure a Server.
type Options struct {
	// Addr is the address to listen on; default "127.0.0.1:0".
	Addr string
	// HostKey is the server's key; default a new ed25519 key.
	HostKey ssh.Signer
	// User, when set, is the only user accepted.
	User string
	// AuthorizedKey is the only client key accepted. Required.
	AuthorizedKey ssh.PublicKey
	// Targets maps a "host:port" a client asks for to the address dialed;
	// other addresses are dialed as asked.
	Targets map[string]string
}

// Server is a running SSH server.
type Server struct {
	ln      net.Listener
	hostKey ssh.Signer
	targets map[string]string
	config  *ssh.ServerConfig
	wg      sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	conns     map[net.Conn]struct{}
	requested []string
	forwarded int
	logins    int
}

// Start starts a server.
func Start(opts Options) (*Server, error) {
	if opts.AuthorizedKey == nil {
		return nil, errors.New("sshtest: Options.AuthorizedKey is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.HostKey == nil {
		k, _, err := NewKey("")
		if err != nil {
			return nil, err
		}
		opts.HostKey = k
	}
	s := &Server{hostKey: opts.HostKey, targets: opts.Targets, conns: map[net.Conn]struct{}{}}
	authorized := opts.AuthorizedKey.Marshal()
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if opts.User != "" && md.User() != opts.User {
				return nil, fmt.Errorf("sshtest: unknown user %q", md.User())
			}
			if string(key.Marshal()) != string(authorized) {
				return nil, errors.New("sshtest: key not authorized")
			}
			return nil, nil
		},
	}
	s.config.AddHostKey(opts.HostKey)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("sshtest: listen: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// NewKey returns a new ed25519 key and its private key in OpenSSH PEM form,
// encrypted with passphrase when it is not "".
func NewKey(passphrase string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "sshtest")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "sshtest", []byte(passphrase))
	}
	if err != nil {
		return nil, nil, err
	}
	return signer, pem.EncodeToMemory(block), nil
}

// Addr returns the server's "host:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns the host of Addr.
func (s *Server) Host() string { h, _, _ := net.SplitHostPort(s.Addr()); return h }

// Port returns the port of Addr.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// HostKey returns the server's host key, to start it again with the same.
func (s *Server) HostKey() ssh.Signer { return s.hostKey }

// KnownHostsLine returns the known_hosts line for the server.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.hostKey.PublicKey())
}

// Forwarded returns how many channels were forwarded to their target.
func (s *Server) Forwarded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forwarded
}

// Logins returns how many clients logged in.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Requested returns the addresses clients asked to be forwarded to.
func (s *Server) Requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requested...)
}

// Close stops listening, drops every connection and waits for the
// server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// track records c so that Close can drop it; it reports false (and closes
// c) when the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.Close()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if s.track(c) {
			go s.handle(c)
		}
	}
}

// handle serves one client connection.
func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer s.untrack(c)
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		return
	}
	defer sc.Close()
	s.mu.Lock()
	s.logins++
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs) // keepalives get a (negative) reply
	}()
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" {
			_ = nc.Reject(ssh.UnknownChannelType, "only direct-tcpip")
			continue
		}
		var req struct {
			Host     string
			Port     uint32
			OrigHost string
			OrigPort uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
			continue
		}
		asked := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
		target := asked
		if t, ok := s.targets[asked]; ok {
			target = t
		}
		s.mu.Lock()
		s.requested = append(s.requested, asked)
		s.mu.Unlock()
		tc, err := net.Dial("tcp", target)
		if err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "connect failed: "+err.Error())
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			_ = tc.Close()
			continue
		}
		s.mu.Lock()
		s.forwarded++
		s.mu.Unlock()
		s.wg.Add(3)
		go func() {
			defer s.wg.Done()
			ssh.DiscardRequests(creqs)
		}()
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(tc, ch)
			_ = tc.Close()
		}()
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(ch, tc)
			_ = ch.Close()
		}()
	}
}
