package codec

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// A float in PostgreSQL < 12's long form (extra_float_digits = 3: %.18g
// for a float8, %.9g for a float4) becomes exactly the text PostgreSQL 12+
// prints for it, and 12+'s text is kept as it is: checked against a real
// server's float4out and float8out.
func TestShortestFloatMatchesPostgres12(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var num int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		t.Fatal(err)
	}
	if num < 120000 {
		t.Skipf("needs PostgreSQL 12+'s shortest float output to compare with; the server is %d", num)
	}
	if _, err := conn.Exec(ctx, `SET extra_float_digits = 3`); err != nil {
		t.Fatal(err)
	}
	values := []string{"0.1", "0.3", "0.30000000000000004", "1.5", "-2.5e-7", "0.0001", "0.00001", "0.000123456789",
		"123456789012345", "1234567890123456", "1e15", "1e14", "12345678.9", "1234567", "123456", "1e22", "-1.7976931348623157e308",
		"5e-324", "2.2250738585072014e-308", "3.141592653589793", "100", "-0", "0", "1e-5", "123.456", "9007199254740993",
		"0.1234567", "1e7", "98765432", "1.401298464324817e-45", "3.4028235e38", "16777217", "0.333333343267"}
	for _, typ := range []struct {
		name   string
		bits   int
		oldFmt byte
		oldDig int
	}{{"float8", 64, 'g', 18}, {"float4", 32, 'g', 9}} {
		for _, v := range values {
			var text string
			var f float64
			err := conn.QueryRow(ctx, `SELECT $1::`+typ.name+`::text, $1::`+typ.name+`::float8`, v).Scan(&text, &f)
			if typ.bits == 32 && pgcat.Is(err, "22003") { // numeric_value_out_of_range
				continue // beyond a float4's range
			}
			if err != nil {
				t.Fatalf("%s %s: %v", typ.name, v, err)
			}
			old := strconv.FormatFloat(f, typ.oldFmt, typ.oldDig, typ.bits)
			for _, in := range []string{old, text} {
				got, ok := appendShortestFloat(nil, []byte(in), typ.bits)
				if !ok || string(got) != text {
					t.Errorf("%s %s: %q became %q (%v), want %q (PostgreSQL %d's text)", typ.name, v, in, got, ok, text, num)
				}
			}
		}
	}
}
