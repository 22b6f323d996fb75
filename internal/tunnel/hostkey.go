package tunnel

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is the refusal of the bastion's host key.
type HostKeyError struct {
	// Addr is the bastion's "host:port".
	Addr string
	// KnownHostsFile is the file the key was checked against.
	KnownHostsFile string
	// Key is the key the bastion offered.
	Key ssh.PublicKey
	// Mismatch is true when the file holds other keys for the bastion
	// (possibly a man-in-the-middle), false when it holds none.
	Mismatch bool
	// Revoked is true when the file marks the key as revoked.
	Revoked bool
}

// Error says what was refused and how to fix it.
func (e *HostKeyError) Error() string {
	offered := fmt.Sprintf("%s %s", e.Key.Type(), ssh.FingerprintSHA256(e.Key))
	switch {
	case e.Revoked:
		return fmt.Sprintf("ssh: host key of %s (%s) is marked @revoked in known_hosts_file %s: refusing to connect; the bastion must use another key", e.Addr, offered, e.KnownHostsFile)
	case e.Mismatch:
		return fmt.Sprintf("ssh: host key of %s (%s) does not match known_hosts_file %s: possible man-in-the-middle; "+
			"if the bastion's key was changed on purpose, replace its line in known_hosts_file (ssh-keyscan %s, after checking the fingerprint)",
			e.Addr, offered, e.KnownHostsFile, keyscanArgs(e.Addr))
	default:
		return fmt.Sprintf("ssh: %s is not in known_hosts_file %s (it offered %s); add its line with ssh-keyscan %s >> %s, after checking the fingerprint",
			e.Addr, e.KnownHostsFile, offered, keyscanArgs(e.Addr), e.KnownHostsFile)
	}
}

// keyscanArgs returns the ssh-keyscan arguments for addr.
func keyscanArgs(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "22" {
		return addr
	}
	return "-p " + port + " " + host
}

// knownHostsCallback returns the host key check against file and the host
// key algorithms to ask the bastion at addr for: those of its keys in the
// file, so that a bastion with several keys offers one the file knows.
func knownHostsCallback(file, addr string) (ssh.HostKeyCallback, []string, error) {
	check, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts_file: %w", err)
	}
	callback := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case errors.As(err, &revoked):
			return &HostKeyError{Addr: hostname, KnownHostsFile: file, Key: key, Revoked: true}
		case errors.As(err, &keyErr):
			return &HostKeyError{Addr: hostname, KnownHostsFile: file, Key: key, Mismatch: len(keyErr.Want) > 0}
		case err != nil:
			return fmt.Errorf("ssh: check the host key of %s against known_hosts_file %s: %w", hostname, file, err)
		}
		return nil
	}
	return callback, knownAlgorithms(check, addr), nil
}

// knownAlgorithms lists the host key algorithms of the keys check knows for
// addr, or nil (the library's default) when it knows none. It asks check
// about a key nobody has, and reads the known keys from its refusal.
func knownAlgorithms(check ssh.HostKeyCallback, addr string) []string {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(check(addr, &net.TCPAddr{}, probe), &keyErr) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, s := range a {
			if !seen[s] {
				seen[s] = true
				algos = append(algos, s)
			}
		}
	}
	for _, k := range keyErr.Want {
		if t := k.Key.Type(); t == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		} else {
			add(t)
		}
	}
	return algos
}

// insecureCallback accepts any host key and logs its fingerprint, so that
// it can be checked and pinned.
func insecureCallback(log *zap.Logger) ssh.HostKeyCallback {
	return func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		log.Info("ssh: accepted the bastion's host key without verification",
			zap.String("bastion", hostname), zap.String("key_type", key.Type()), zap.String("fingerprint", ssh.FingerprintSHA256(key)))
		return nil
	}
}
