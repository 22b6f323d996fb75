package mapper

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config/defaults"
	"github.com/pgsignal/pgsignal/mapper/codec"
	"github.com/pgsignal/pgsignal/replication"
)

// OneSignal's limits (see onesignal-api.md).
const (
	// MaxEventBytes is the largest serialized event OneSignal accepts.
	MaxEventBytes = 2024
	// MaxNameChars is the longest event name OneSignal accepts.
	MaxNameChars = defaults.MaxEventNameLen
)

// Rule maps one table's rows to events.
type Rule struct {
	// Schema and Table name the source table (unquoted).
	Schema, Table string
	// NameColumn holds the event name; NameValue is a constant name instead.
	NameColumn, NameValue string
	// NamePrefix is prepended to the name.
	NamePrefix string
	// ExternalID is the column holding the user's external_id.
	ExternalID string
	// Timestamp is the optional column holding the event time (timestamptz,
	// timestamp or date read in TimestampZone, or epoch seconds or
	// milliseconds when TimestampUnit is set); the commit time when empty
	// or NULL.
	Timestamp string
	// TimestampZone is the IANA zone timestamp (without time zone) and date
	// values are read in, as PostgreSQL's AT TIME ZONE reads them across
	// DST changes (see codec.InZone); "" is UTC.
	TimestampZone string
	// TimestampUnit is UnitSeconds or UnitMillis when Timestamp is an
	// integer or numeric column holding epoch time; "" otherwise.
	TimestampUnit string
	// Properties is a json/jsonb column (one name, PropertiesList false) or
	// a list of columns that become the properties object.
	Properties     []string
	PropertiesList bool
	// PropertiesColumns are added to the object of the json/jsonb
	// Properties column, replacing a key of the same name; without
	// Properties they are the object. Their keys come after the json keys,
	// in this order.
	PropertiesColumns []string
	// Exclude are keys dropped from the object of the json/jsonb Properties
	// column (not from PropertiesColumns).
	Exclude []string
	// Updates makes the table's updates events too (see MapUpdate).
	Updates bool
}

// Values of Rule.TimestampUnit.
const (
	// UnitSeconds reads an epoch timestamp in seconds (a numeric may have
	// a fraction; digits below the millisecond are dropped).
	UnitSeconds = "s"
	// UnitMillis reads an epoch timestamp in milliseconds.
	UnitMillis = "ms"
)

// maxPlans bounds the plans kept (one per table definition seen; a
// reconnect brings new ones).
const maxPlans = 256

// Mapper applies rules. It is safe for use by one goroutine at a time (the
// stream's).
type Mapper struct {
	rules map[replication.TableRef]*Rule
	mu    sync.Mutex
	plans map[*replication.Relation]*plan
	buf   []byte
	// ts caches the last timestamp parsed: the rows of a transaction often
	// carry the same one (a DEFAULT now()).
	ts tsCache
	// OnPlan, when set, is told each time a mapped table's definition is
	// compiled: problem says why none of its rows can become an event (a
	// mapped column renamed or dropped, a type changed), "" when they can.
	// It is called from the mapping goroutine and must not block.
	OnPlan func(table string, problem string)
}

var _ replication.Mapper = (*Mapper)(nil)

// New returns a mapper for rules. Rules must be valid (config validation).
func New(rules []Rule) (*Mapper, error) {
	m := &Mapper{rules: map[replication.TableRef]*Rule{}, plans: map[*replication.Relation]*plan{}}
	for i := range rules {
		r := &rules[i]
		key := r.Schema + "." + r.Table
		ref := replication.TableRef{Schema: r.Schema, Name: r.Table}
		if _, dup := m.rules[ref]; dup {
			return nil, fmt.Errorf("table %s is mapped twice", key)
		}
		if (r.NameColumn == "") == (r.NameValue == "") {
			return nil, fmt.Errorf("table %s: exactly one of name and name_value is needed", key)
		}
		if r.ExternalID == "" {
			return nil, fmt.Errorf("table %s: external_id is required", key)
		}
		if err := checkRule(r); err != nil {
			return nil, fmt.Errorf("table %s: %w", key, err)
		}
		m.rules[ref] = r
	}
	return m, nil
}

// plan is a rule compiled against one version of a relation.
type plan struct {
	rule     *Rule
	rel      *replication.Relation
	name     int // column index or -1 for the constant
	extID    int
	ts       int // -1: commit time
	tsType   uint32
	tsLoc    *time.Location // zone of timestamp and date values
	tsUnit   string         // epoch unit, or ""
	props    []int
	propJSON bool // props is one json/jsonb column embedded as the object
	// keys holds each property's pre-encoded `"name":`.
	keys [][]byte
	// extra are the PropertiesColumns merged into a json object, with their
	// pre-encoded keys in extraKeys; drop holds the json keys left out
	// (Exclude and the extra columns' names). merge is set when either is
	// non-empty.
	extra     []int
	extraKeys [][]byte
	drop      map[string]bool
	merge     bool
	// err, when set, rejects every row (e.g. a mapped column is missing).
	err string
}

func (m *Mapper) plan(rel *replication.Relation) *plan {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.plans[rel]; ok {
		return p
	}
	if len(m.plans) >= maxPlans {
		// Each reconnect brings new Relation values: forget the old plans.
		clear(m.plans)
	}
	var p *plan
	if r, ok := m.rules[rel.Key()]; ok {
		p = compile(r, rel)
		if m.OnPlan != nil {
			m.OnPlan(rel.Key().Display(), p.err)
		}
	}
	m.plans[rel] = p
	return p
}

func compile(r *Rule, rel *replication.Relation) *plan {
	p := &plan{rule: r, rel: rel, name: -1, ts: -1, tsLoc: time.UTC, tsUnit: r.TimestampUnit}
	if r.TimestampZone != "" {
		// checkRule loaded it once already: this cannot fail.
		if loc, err := time.LoadLocation(r.TimestampZone); err == nil {
			p.tsLoc = loc
		}
	}
	var missing []string
	col := func(name string) int {
		i := rel.Index(name)
		if i < 0 {
			missing = append(missing, name)
		}
		return i
	}
	if r.NameColumn != "" {
		p.name = col(r.NameColumn)
	}
	p.extID = col(r.ExternalID)
	if r.Timestamp != "" {
		p.ts = col(r.Timestamp)
		if p.ts >= 0 {
			p.tsType = rel.Columns[p.ts].TypeOID
			switch {
			case p.tsUnit != "":
				if !IsEpochType(p.tsType) {
					p.err = fmt.Sprintf("timestamp column %q of %s is not an integer or numeric column, which timestamp_unit %q needs", r.Timestamp, rel.QualifiedName(), p.tsUnit)
				}
			case p.tsType == pgtype.TimestamptzOID, p.tsType == pgtype.TimestampOID, p.tsType == pgtype.DateOID:
			default:
				p.err = fmt.Sprintf("timestamp column %q of %s is not a timestamptz, timestamp or date column", r.Timestamp, rel.QualifiedName())
			}
		}
	}
	props, list := r.Properties, r.PropertiesList
	if len(props) == 0 {
		// properties_columns alone: a list.
		props, list = r.PropertiesColumns, true
	}
	for _, c := range props {
		i := col(c)
		p.props = append(p.props, i)
		p.keys = append(p.keys, append(codec.AppendString(nil, c), ':'))
	}
	if !list && len(props) == 1 {
		p.compileMerge(col)
	}
	if !list && len(p.props) == 1 && p.props[0] >= 0 {
		switch t := rel.Columns[p.props[0]].TypeOID; t {
		case pgtype.JSONOID, pgtype.JSONBOID:
			p.propJSON = true
		default:
			p.err = fmt.Sprintf("properties column %q of %s is not json or jsonb; write `properties: [%s]` to send it as one property", r.Properties[0], rel.QualifiedName(), r.Properties[0])
		}
	}
	if len(missing) > 0 {
		p.err = fmt.Sprintf("mapped column(s) %q not found in %s", missing, rel.QualifiedName())
	}
	return p
}

// Map implements replication.Mapper.
func (m *Mapper) Map(ch *replication.Change) *cdc.Event {
	p := m.plan(ch.Rel)
	if p == nil {
		return nil
	}
	ev := &cdc.Event{
		Pos:            ch.Pos,
		Table:          ch.Rel.QualifiedName(),
		IdempotencyKey: ch.IdempotencyKey,
		CommitTime:     ch.CommitTime,
	}
	if reason := m.build(p, ch, ev); reason != "" {
		ev.Reject = reason
		ev.JSON = nil
		ev.Row = RowJSON(ch.Rel, ch.Values)
	}
	return ev
}

// UsesColumn reports whether the events of rel's rows read the column at
// index col (replication.ColumnUser): the name, external_id, timestamp and
// properties columns. A table without a rule reads none; a rule that
// cannot map the table reads every column.
func (m *Mapper) UsesColumn(rel *replication.Relation, col int) bool {
	p := m.plan(rel)
	if p == nil {
		return false
	}
	if p.err != "" {
		return true
	}
	if col == p.name || col == p.extID || col == p.ts {
		return true
	}
	for _, c := range p.props {
		if c == col {
			return true
		}
	}
	for _, c := range p.extra {
		if c == col {
			return true
		}
	}
	return false
}

// build fills ev.Name, ev.ExternalID and ev.JSON, or returns why it cannot.
func (m *Mapper) build(p *plan, ch *replication.Change, ev *cdc.Event) string {
	if p.err != "" {
		return p.err
	}
	r := p.rule
	name := r.NameValue
	if p.name >= 0 {
		v := ch.Values[p.name]
		if len(v) == 0 {
			return fmt.Sprintf("event name column %q is %s", r.NameColumn, nullOrEmpty(v))
		}
		if !utf8.Valid(v) {
			return notUTF8(fmt.Sprintf("event name column %q", r.NameColumn), v)
		}
		name = string(v)
	}
	name = r.NamePrefix + name
	if n := utf8.RuneCountInString(name); n > MaxNameChars {
		return fmt.Sprintf("event name is %d characters; OneSignal allows at most %d", n, MaxNameChars)
	}
	ext := ch.Values[p.extID]
	if len(ext) == 0 {
		return fmt.Sprintf("external_id column %q is %s", r.ExternalID, nullOrEmpty(ext))
	}
	if !utf8.Valid(ext) {
		// As text, every invalid byte would become U+FFFD: different users
		// would become one.
		return notUTF8(fmt.Sprintf("external_id column %q", r.ExternalID), ext)
	}
	if reason := propertiesNotUTF8(p, ch); reason != "" {
		return reason
	}
	ts := ch.CommitTime
	if p.ts >= 0 && ch.Values[p.ts] != nil {
		var t time.Time
		var err error
		if p.tsUnit != "" {
			t, err = parseEpoch(ch.Values[p.ts], p.tsUnit)
		} else {
			t, err = m.ts.parse(p.tsType, ch.Values[p.ts], p.tsLoc)
		}
		if err != nil {
			return fmt.Sprintf("timestamp column %q: %v", r.Timestamp, err)
		}
		ts = t
	}
	b := m.buf[:0]
	b = append(b, `{"name":`...)
	b = codec.AppendString(b, name)
	b = append(b, `,"external_id":`...)
	b = codec.AppendString(b, ext)
	b = append(b, `,"timestamp":"`...)
	b = codec.AppendTimestampMillis(b, ts)
	b = append(b, '"')
	if ev.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":"`...)
		b = append(b, ev.IdempotencyKey...)
		b = append(b, '"')
	}
	if len(p.props) > 0 {
		var reason string
		b, reason = appendProperties(b, p, ch)
		if reason != "" {
			m.buf = b
			return reason
		}
	}
	b = append(b, '}')
	m.buf = b
	if len(b) > MaxEventBytes {
		return fmt.Sprintf("event is %d bytes; OneSignal accepts at most %d bytes per event", len(b), MaxEventBytes)
	}
	ev.Name = name
	ev.ExternalID = string(ext)
	ev.JSON = bytes.Clone(b)
	return ""
}

func appendProperties(b []byte, p *plan, ch *replication.Change) ([]byte, string) {
	if p.propJSON && p.merge {
		return appendMerged(b, p, ch)
	}
	if p.propJSON {
		v := ch.Values[p.props[0]]
		if v == nil {
			return b, "" // NULL properties: none
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || v[0] != '{' {
			return b, fmt.Sprintf("properties column %q holds %s, not a JSON object", p.rule.Properties[0], jsonKind(v))
		}
		b = append(b, `,"properties":`...)
		if p.rel.Columns[p.props[0]].TypeOID == pgtype.JSONOID {
			// json keeps the input's white space; compact it so it counts
			// less against the size limit.
			start := len(b)
			var out bytes.Buffer
			if err := json.Compact(&out, v); err == nil {
				return append(b[:start], out.Bytes()...), ""
			}
		}
		return append(b, v...), ""
	}
	b = append(b, `,"properties":{`...)
	for i, idx := range p.props {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.keys[i]...)
		b = codec.AppendJSON(b, p.rel.Columns[idx].TypeOID, ch.Values[idx])
	}
	return append(b, '}'), ""
}

func nullOrEmpty(v []byte) string {
	if v == nil {
		return "NULL"
	}
	return "empty"
}

func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// RowJSON renders a whole row as a JSON object of its columns (for dead
// letters). It is always valid UTF-8 and loses no byte: a value whose text
// is not valid UTF-8 (a SQL_ASCII database) becomes {"not_utf8":"\\x…"},
// its bytes in PostgreSQL's bytea hex form, and such bytes in a column
// name are written as the text \xNN.
func RowJSON(rel *replication.Relation, vals [][]byte) []byte {
	b := make([]byte, 0, 256)
	b = append(b, '{')
	for i, c := range rel.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = codec.AppendString(b, escapeNotUTF8(c.Name))
		b = append(b, ':')
		var v []byte
		if i < len(vals) {
			v = vals[i]
		}
		if !utf8.Valid(v) {
			b = append(b, `{"not_utf8":"\\x`...)
			b = hex.AppendEncode(b, v)
			b = append(b, `"}`...)
			continue
		}
		b = codec.AppendJSON(b, c.TypeOID, v)
	}
	return append(b, '}')
}

// propertiesNotUTF8 returns why the row cannot be sent when a column that
// goes into its properties holds text that is not valid UTF-8, or "".
// Such bytes cannot be sent as they are (the request would not be valid
// UTF-8) nor replaced (the property would change), so the row becomes a
// dead letter.
func propertiesNotUTF8(p *plan, ch *replication.Change) string {
	for _, cols := range [][]int{p.props, p.extra} {
		for _, idx := range cols {
			if idx >= 0 && idx < len(ch.Values) && !utf8.Valid(ch.Values[idx]) {
				return notUTF8(fmt.Sprintf("properties column %q", p.rel.Columns[idx].Name), ch.Values[idx])
			}
		}
	}
	return ""
}

// maxShownBytes bounds the bytes of a value quoted in a reason.
const maxShownBytes = 48

// notUTF8 is the rejection of value v of what, whose text is not valid
// UTF-8. The reason itself is valid UTF-8: it quotes the bytes around the
// first invalid one with Go's escapes (\xe9) and gives them in hex, as
// PostgreSQL writes a bytea, to find the row with
// convert_to(column, 'SQL_ASCII') = '\x…'.
func notUTF8(what string, v []byte) string {
	bad := 0
	for bad < len(v) {
		r, size := utf8.DecodeRune(v[bad:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		bad += size
	}
	from := max(0, bad-maxShownBytes/2)
	to := min(len(v), from+maxShownBytes)
	show := strconv.Quote(string(v[from:to]))
	if from > 0 {
		show = "…" + show
	}
	if to < len(v) {
		show += "…"
	}
	hexText := "\\x" + hex.EncodeToString(v[from:to])
	if from > 0 || to < len(v) {
		hexText = fmt.Sprintf("%s (bytes %d to %d of %d)", hexText, from, to, len(v))
	}
	consequence := "it is not sent, since OneSignal would read those bytes as U+FFFD and change it"
	if strings.HasPrefix(what, "external_id") {
		consequence = "it is not sent, since OneSignal would read those bytes as U+FFFD: different users would become one"
	}
	return fmt.Sprintf("%s holds text that is not valid UTF-8 (byte %d): %s, %s; %s. The database encoding is probably SQL_ASCII: see pgsignal check",
		what, bad, show, hexText, consequence)
}

// escapeNotUTF8 returns s with each byte that is not part of valid UTF-8
// written as the text \xNN.
func escapeNotUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, "\\x%02x", s[i])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// tsCache remembers the last timestamp text parsed and its value.
type tsCache struct {
	typeOID uint32
	loc     *time.Location
	text    []byte
	t       time.Time
}

// parse is codec.ParseTimestamp, answered from the cache when text, its
// type and zone are the last ones parsed successfully.
func (c *tsCache) parse(typeOID uint32, text []byte, loc *time.Location) (time.Time, error) {
	if c.text != nil && c.typeOID == typeOID && c.loc == loc && bytes.Equal(c.text, text) {
		return c.t, nil
	}
	t, err := codec.ParseTimestamp(typeOID, text, loc)
	if err != nil {
		return t, err
	}
	c.typeOID, c.loc, c.t = typeOID, loc, t
	c.text = append(c.text[:0], text...)
	return t, nil
}
