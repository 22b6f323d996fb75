// Package tunnel reaches the database through an SSH bastion.
//
// New builds a Tunnel from the `source.ssh` configuration: it reads the
// private key (from a file or an environment variable, decrypting it with a
// passphrase from another variable when needed) and the bastion's host keys
// from an OpenSSH known_hosts file. It does not connect: the first Dial does.
//
// Tunnel.Dial is a pgconn.DialFunc. It opens a "direct-tcpip" channel through
// the bastion to the address pgconn asks for, so the database's host name is
// resolved and reached from the bastion (replication.Source turns off local
// name lookup when a dialer is set). Every connection, replication and
// ordinary, shares one SSH client. When that client drops (the bastion
// restarted, the network failed, a keepalive went unanswered), the next Dial
// builds a new one; concurrent Dials wait for the same new client rather
// than each opening one. Dial never retries a failed bastion connection on
// its own: the caller's reconnect loop does, with its backoff.
//
// The connections Dial returns support deadlines (an SSH channel does not,
// and pgconn needs them to cancel reads) and report the database's address
// as RemoteAddr, so pgconn's cancel requests go through the tunnel too.
//
// Host keys are always verified against known_hosts_file, unless the
// configuration sets insecure_ignore_host_key, which New logs as a warning
// every time. A key that differs from the file is refused as a possible
// man-in-the-middle; an unknown host is refused with the command that adds
// it. Neither the private key nor its passphrase ever appears in an error
// or a log line.
//
// The sshtest subpackage is an in-process SSH server for tests.
package tunnel
