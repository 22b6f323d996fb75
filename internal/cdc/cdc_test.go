package cdc

import (
	"math"
	"regexp"
	"strings"
	"testing"
)

// dnsNamespace is the RFC 9562 (and RFC 4122) DNS namespace,
// 6ba7b810-9dad-11d1-80b4-00c04fd430c8.
var dnsNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestUUIDv5(t *testing.T) {
	tests := []struct {
		name  string
		ns    [16]byte
		parts []string
		want  string
	}{
		// RFC 9562, Appendix A.4.
		{"rfc vector", dnsNamespace, []string{"www.example.com"}, "2ed6657d-e927-568b-95e1-2665a8aea6a2"},
		// The parts are concatenated before hashing.
		{"rfc vector in parts", dnsNamespace, []string{"www.", "example", ".com"}, "2ed6657d-e927-568b-95e1-2665a8aea6a2"},
		{"rfc vector with empty parts", dnsNamespace, []string{"", "www.example.com", ""}, "2ed6657d-e927-568b-95e1-2665a8aea6a2"},
		// python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_DNS, "python.org"))'
		{"python.org", dnsNamespace, []string{"python.org"}, "886313e1-3b8a-5372-9b90-0c9aee199e5d"},
		// python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_DNS, ""))'
		{"empty name", dnsNamespace, nil, "4ebd0208-8328-5d69-8c44-ec50939c0967"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UUIDv5(tt.ns, tt.parts...)
			if got != tt.want {
				t.Errorf("UUIDv5(%x, %q) = %s, want %s", tt.ns, tt.parts, got, tt.want)
			}
			if !uuidRE.MatchString(got) {
				t.Errorf("UUIDv5 = %s: not a lower-case version 5, RFC-variant UUID", got)
			}
		})
	}
}

func TestIdempotencyKeyGolden(t *testing.T) {
	// The key of a row must never change between releases: a replay after
	// an upgrade must send the keys OneSignal already saw. These values pin
	// the derivation (namespace, separators, big-endian LSN and ordinal); they
	// were computed independently with Python's hashlib:
	//   uuid.UUID(bytes=sha1(ns + f"{sys}/{slot}/".encode() + struct.pack(">QI", lsn, ord)).digest()[:16], version=5)
	tests := []struct {
		systemID, slot string
		pos            Position
		want           string
	}{
		{"7311234567890123456", "pgsignal", Position{CommitLSN: 0x16B374D848, Ordinal: 3}, "9edb7d74-0f23-59df-a81a-7805964fafb8"},
		{"", "", Position{}, "066dab5b-1cce-5775-9baa-cdc6631273ab"},
	}
	for _, tt := range tests {
		if got := IdempotencyKey(tt.systemID, tt.slot, tt.pos); got != tt.want {
			t.Errorf("IdempotencyKey(%q, %q, %v) = %s, want %s", tt.systemID, tt.slot, tt.pos, got, tt.want)
		}
	}
}

func TestIdempotencyKeyDeterministicAndDistinct(t *testing.T) {
	base := struct {
		sys, slot string
		pos       Position
	}{"7311234567890123456", "pgsignal", Position{CommitLSN: 0x1000, Ordinal: 7}}
	key := IdempotencyKey(base.sys, base.slot, base.pos)
	if again := IdempotencyKey(base.sys, base.slot, base.pos); again != key {
		t.Fatalf("IdempotencyKey is not deterministic: %s then %s", key, again)
	}
	if !uuidRE.MatchString(key) {
		t.Fatalf("key %s is not a version 5 RFC-variant UUID", key)
	}
	variants := []struct {
		name      string
		sys, slot string
		pos       Position
	}{
		{"system id", "7311234567890123457", base.slot, base.pos},
		{"slot", base.sys, "pgsignal2", base.pos},
		{"commit LSN", base.sys, base.slot, Position{CommitLSN: 0x1001, Ordinal: 7}},
		{"commit LSN high word", base.sys, base.slot, Position{CommitLSN: 0x1_0000_1000, Ordinal: 7}},
		{"ordinal", base.sys, base.slot, Position{CommitLSN: 0x1000, Ordinal: 8}},
		{"ordinal zero", base.sys, base.slot, Position{CommitLSN: 0x1000, Ordinal: 0}},
	}
	seen := map[string]string{key: "base"}
	for _, v := range variants {
		got := IdempotencyKey(v.sys, v.slot, v.pos)
		if !uuidRE.MatchString(got) {
			t.Errorf("%s: key %s is not a version 5 RFC-variant UUID", v.name, got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("changing the %s gives the same key as %s: %s", v.name, prev, got)
		}
		seen[got] = v.name
	}
}

func TestIdempotencyKeyUniqueOverManyPositions(t *testing.T) {
	seen := make(map[string]Position, 4096)
	for lsn := LSN(0); lsn < 64; lsn++ {
		for ord := uint32(0); ord < 64; ord++ {
			p := Position{CommitLSN: lsn << 24, Ordinal: ord}
			k := IdempotencyKey("1", "s", p)
			if q, dup := seen[k]; dup {
				t.Fatalf("positions %v and %v share key %s", q, p, k)
			}
			seen[k] = p
		}
	}
}

func TestLSNString(t *testing.T) {
	tests := []struct {
		lsn  LSN
		want string
	}{
		{0, "0/0"},
		{1, "0/1"},
		{0x16B374D848, "16/B374D848"},
		{0xFFFFFFFF, "0/FFFFFFFF"},
		{0x1_0000_0000, "1/0"},
		{math.MaxUint64, "FFFFFFFF/FFFFFFFF"},
	}
	for _, tt := range tests {
		if got := tt.lsn.String(); got != tt.want {
			t.Errorf("LSN(%#x).String() = %q, want %q", uint64(tt.lsn), got, tt.want)
		}
		back, err := ParseLSN(tt.want)
		if err != nil || back != tt.lsn {
			t.Errorf("ParseLSN(%q) = %#x, %v; want %#x", tt.want, uint64(back), err, uint64(tt.lsn))
		}
	}
}

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want LSN
	}{
		{"16/b374d848", 0x16B374D848}, // PostgreSQL prints upper case; both parse
		{"0/00000001", 1},
		{"00000000/0", 0},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLSN(%q) = %#x, %v; want %#x", tt.in, uint64(got), err, uint64(tt.want))
		}
	}
}

func TestParseLSNErrors(t *testing.T) {
	for _, in := range []string{"", "16", "16/", "/16", "xyz", "G/0", "-1/0", "1-2", "100000000/0", "0/100000000"} {
		got, err := ParseLSN(in)
		if err == nil {
			t.Errorf("ParseLSN(%q) = %v, nil; want an error", in, got)
			continue
		}
		if want := "parse LSN " + `"` + in + `"`; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParseLSN(%q) error = %q, want prefix %q", in, err, want)
		}
	}
}

func TestParseLSNTrailingGarbage(t *testing.T) {
	for _, in := range []string{"1/2junk", "1/2 ", " 1/2", "1/ 2", "1/2/3"} {
		if got, err := ParseLSN(in); err == nil {
			t.Errorf("ParseLSN(%q) = %v, nil; want an error", in, got)
		}
	}
}

func TestParseLSNRoundTripMany(t *testing.T) {
	// A deterministic walk over the 64-bit space (hi and lo words with
	// leading zeros, all hex digits).
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < 2000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		l := LSN(x >> (uint(i) % 64))
		got, err := ParseLSN(l.String())
		if err != nil || got != l {
			t.Fatalf("ParseLSN(%q) = %#x, %v; want %#x", l.String(), uint64(got), err, uint64(l))
		}
	}
}

func TestPositionLess(t *testing.T) {
	tests := []struct {
		p, q Position
		want bool
	}{
		{Position{1, 0}, Position{1, 0}, false},
		{Position{1, 0}, Position{1, 1}, true},
		{Position{1, 1}, Position{1, 0}, false},
		{Position{1, 9}, Position{2, 0}, true},
		{Position{2, 0}, Position{1, 9}, false},
		{Position{0, 0}, Position{0, 1}, true},
		{Position{}, Position{}, false},
		{Position{1, math.MaxUint32}, Position{2, 0}, true},
		{Position{math.MaxUint64, 0}, Position{1, math.MaxUint32}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Less(tt.q); got != tt.want {
			t.Errorf("%v.Less(%v) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestPositionString(t *testing.T) {
	tests := []struct {
		p    Position
		want string
	}{
		{Position{}, "0/0#0"},
		{Position{CommitLSN: 0x16B374D848, Ordinal: 3}, "16/B374D848#3"},
		{Position{CommitLSN: 1 << 32, Ordinal: math.MaxUint32}, "1/0#4294967295"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestEventSize(t *testing.T) {
	tests := []struct {
		ev   Event
		want int
	}{
		{Event{}, 128},
		{Event{JSON: make([]byte, 10)}, 138},
		{Event{JSON: make([]byte, 10), Row: make([]byte, 5), Name: "ignored"}, 143},
	}
	for _, tt := range tests {
		if got := tt.ev.Size(); got != tt.want {
			t.Errorf("Size() = %d, want %d", got, tt.want)
		}
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		// Whatever parsed must print in the canonical form and parse back.
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseLSN(%q) = %v, but ParseLSN(%q) = %v, %v", s, l, l.String(), back, err)
		}
	})
}
