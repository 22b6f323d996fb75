package onesignaltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

const (
	testAuth = "Key " + DefaultAPIKey
	testPath = "/apps/" + DefaultAppID + "/custom_events"
)

// TestMain fails the run when a server goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := serverGoroutines(2 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// serverGoroutines waits up to d for the server goroutines to end and returns
// the stacks of those still running.
func serverGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "net/http.(*conn).serve") ||
				strings.Contains(g, "net/http.(*Server).Serve") ||
				strings.Contains(g, "onesignaltest.(*Server)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve sends one request to s's handler.
func serve(t *testing.T, s *Server, method, path, auth, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// post sends an authorized POST of body to s's handler.
func post(t *testing.T, s *Server, body string) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, s, http.MethodPost, testPath, testAuth, body)
}

// start starts a Server and closes it when the test ends.
func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// postHTTP sends an authorized POST of body to a started Server.
func postHTTP(t *testing.T, c *http.Client, s *Server, body string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+testPath, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Authorization", testAuth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp, string(b), nil
}

// newClient returns an HTTP client whose idle connections are closed when
// the test ends.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// errorsOf decodes the errors list of a JSON error body.
func errorsOf(t *testing.T, body string) []string {
	t.Helper()
	var v struct {
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode error body %q: %v", body, err)
	}
	return v.Errors
}

// batch wraps events into a request body.
func batch(events ...string) string {
	return `{"events":[` + strings.Join(events, ",") + `]}`
}

// ev is a valid event for user with the given name.
func ev(name, user string) string {
	return fmt.Sprintf(`{"name":%q,"external_id":%q}`, name, user)
}

// evKey is a valid event with an idempotency key.
func evKey(name, user, key string) string {
	return fmt.Sprintf(`{"name":%q,"external_id":%q,"idempotency_key":%q}`, name, user, key)
}

// sizedEvent is a valid event exactly size bytes long.
func sizedEvent(size int) string {
	const head, tail = `{"name":"big","external_id":"u","properties":{"pad":"`, `"}}`
	return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
}

// sizedBody is a valid body of exactly size bytes (events padded with
// trailing spaces).
func sizedBody(size int) string {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i := 0; b.Len()+2100 < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sizedEvent(2000))
	}
	b.WriteString(`]}`)
	b.WriteString(strings.Repeat(" ", size-b.Len()))
	return b.String()
}

// testTime is a fixed instant for tests.
var testTime = time.Date(2025, 10, 21, 19, 9, 32, 0, time.UTC)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }
