package mapper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/replication"
)

// OneSignal's limits (see onesignal-api.md).
const (
	// MaxEventBytes is the largest serialized event OneSignal accepts.
	MaxEventBytes = 2024
	// MaxNameChars is the longest event name OneSignal accepts.
	MaxNameChars = 128
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
	// values are read in; "" is UTC.
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
		p.keys = append(p.keys, append(replication.AppendString(nil, c), ':'))
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
	ts := ch.CommitTime
	if p.ts >= 0 && ch.Values[p.ts] != nil {
		var t time.Time
		var err error
		if p.tsUnit != "" {
			t, err = parseEpoch(ch.Values[p.ts], p.tsUnit)
		} else {
			t, err = replication.ParseTimestamp(p.tsType, ch.Values[p.ts], p.tsLoc)
		}
		if err != nil {
			return fmt.Sprintf("timestamp column %q: %v", r.Timestamp, err)
		}
		ts = t
	}
	b := m.buf[:0]
	b = append(b, `{"name":`...)
	b = replication.AppendString(b, name)
	b = append(b, `,"external_id":`...)
	b = replication.AppendString(b, ext)
	b = append(b, `,"timestamp":"`...)
	b = replication.AppendTimestampMillis(b, ts)
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
		b = replication.AppendJSON(b, p.rel.Columns[idx].TypeOID, ch.Values[idx])
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
// letters).
func RowJSON(rel *replication.Relation, vals [][]byte) []byte {
	b := make([]byte, 0, 256)
	b = append(b, '{')
	for i, c := range rel.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = replication.AppendString(b, c.Name)
		b = append(b, ':')
		var v []byte
		if i < len(vals) {
			v = vals[i]
		}
		b = replication.AppendJSON(b, c.TypeOID, v)
	}
	return append(b, '}')
}
