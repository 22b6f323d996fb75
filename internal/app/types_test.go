package app

import (
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// One column of every supported type becomes exactly the expected JSON.
func TestStreamTypedProperties(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(`CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE public.typed (
  id bigserial PRIMARY KEY, uid text, t text, vc varchar(10), ch char(3), i2 int2, i4 int4, i8 int8,
  num numeric, f4 float4, f8 float8, b bool, j json, jb jsonb, tstz timestamptz, ts timestamp,
  d date, tm time, u uuid, by bytea, arr int[], arr2 int[][], tarr text[], numarr numeric[],
  tsarr timestamptz[], byarr bytea[], jbarr jsonb[], m mood, dom posint, ip inet, nul text,
  fnan float8, finf float8, nnan numeric)`)
	cols := []string{"t", "vc", "ch", "i2", "i4", "i8", "num", "f4", "f8", "b", "j", "jb", "tstz", "ts", "d", "tm",
		"u", "by", "arr", "arr2", "tarr", "numarr", "tsarr", "byarr", "jbarr", "m", "dom", "ip", "nul", "fnan", "finf", "nnan"}
	cfg := h.config()
	cfg.Tables = []config.Table{{Schema: "public", Name: "typed", EventNameValue: "typed", ExternalID: "uid",
		Properties: cols, PropertiesIsList: true}}
	r := h.start(cfg)
	h.exec(`INSERT INTO public.typed (uid, t, vc, ch, i2, i4, i8, num, f4, f8, b, j, jb, tstz, ts, d, tm, u, by,
  arr, arr2, tarr, numarr, tsarr, byarr, jbarr, m, dom, ip, nul, fnan, finf, nnan) VALUES (
  'u1', E'hello "world"\n\t\\', 'abc', 'ab', -32768, 2147483647, 9223372036854775807,
  12345678901234567890.123456789, 1.5, 0.1, true, '{"a": 1,  "b": [1,2]}', '{"b": [1, 2], "a": 1}',
  '2024-02-29 12:34:56.789+02', '2024-02-29 12:34:56.5', '2024-02-29', '12:34:56',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef', '{1,2,NULL}', '{{1,2},{3,4}}',
  '{"a b","c\"d",NULL,"NULL",""}', '{1.50,NaN}', '{"2024-01-01 00:00:00+00"}', '{"\\x01ff"}',
  ARRAY['{"a": 1}'::jsonb], 'happy', 42, '10.0.0.1', NULL, 'NaN', '-Infinity', 'NaN')`)
	h.waitCount(1)
	r.stop(t)
	ev := h.fake.Events()[0]
	want := `{"t":"hello \"world\"\n\t\\","vc":"abc","ch":"ab ","i2":-32768,"i4":2147483647,"i8":9223372036854775807,` +
		`"num":12345678901234567890.123456789,"f4":1.5,"f8":0.1,"b":true,"j":{"a": 1,  "b": [1,2]},"jb":{"a": 1, "b": [1, 2]},` +
		`"tstz":"2024-02-29T10:34:56.789Z","ts":"2024-02-29T12:34:56.5","d":"2024-02-29","tm":"12:34:56",` +
		`"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","by":"3q2+7w==","arr":[1,2,null],"arr2":[[1,2],[3,4]],` +
		`"tarr":["a b","c\"d",null,"NULL",""],"numarr":[1.50,"NaN"],"tsarr":["2024-01-01T00:00:00Z"],"byarr":["Af8="],` +
		`"jbarr":[{"a": 1}],"m":"happy","dom":"42","ip":"10.0.0.1","nul":null,"fnan":"NaN","finf":"-Infinity","nnan":"NaN"}`
	if string(ev.Properties) != want {
		t.Fatalf("properties\n got: %s\nwant: %s", ev.Properties, want)
	}
	if ev.Name != "typed" || ev.ExternalID != "u1" {
		t.Fatalf("name %q external_id %q", ev.Name, ev.ExternalID)
	}
}
