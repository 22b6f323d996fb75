package onesignaltest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

func Example() {
	srv, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	body := `{"events":[{"name":"purchase","external_id":"user_12345",` +
		`"idempotency_key":"123e4567-e89b-12d3-a456-426614174000","properties":{"item":"T-shirt"}}]}`
	req, err := http.NewRequest(http.MethodPost,
		srv.URL()+"/apps/"+onesignaltest.DefaultAppID+"/custom_events", strings.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("Authorization", "Key "+onesignaltest.DefaultAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(answer))

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.WaitForCount(ctx, 1); err != nil {
		fmt.Println(err)
		return
	}
	ev := srv.Events()[0]
	fmt.Println(ev.Name, ev.ExternalID, string(ev.Properties))
	// Output:
	// 202 {}
	// purchase user_12345 {"item":"T-shirt"}
}

func ExampleServer_SetFaults() {
	srv := onesignaltest.New(onesignaltest.Options{})
	defer srv.Close()
	srv.SetFaults(onesignaltest.Faults{Rate429: 1, RetryAfter: 2 * time.Second})
	// Every authorized request to srv is now answered
	// 429 {"errors":["API rate limit exceeded."]} with "Retry-After: 2".
}
