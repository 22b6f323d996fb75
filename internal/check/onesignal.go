package check

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgsignal/pgsignal/sink"
)

// itemOneSignal is the name of the OneSignal item.
const itemOneSignal = "onesignal credentials"

// oneSignal posts an empty batch, which creates no event, to learn whether
// OneSignal accepts the app id and the API key. OneSignal documents no
// answer for an empty batch: its JSON 202 or its JSON 400 both show that
// the key and the app were accepted (a refused key is a 401/403, a wrong
// app a 400 "app_id not found"). An answer that is not OneSignal's JSON
// (a web page, a proxy, a truncated body) fails: events sent there would
// not reach OneSignal.
func (r *runner) oneSignal(ctx context.Context) {
	o := r.cfg.OneSignal
	client := sink.NewClient(sink.ClientConfig{BaseURL: o.URL, AppID: o.AppID, APIKey: o.APIKey,
		Timeout: o.Timeout, HTTPClient: r.opts.HTTPClient})
	_, err := client.Send(ctx, []byte(`{"events":[]}`))
	var se *sink.StatusError
	var ue *sink.UnexpectedAnswerError
	switch {
	case err == nil:
		r.pass(itemOneSignal, fmt.Sprintf("OneSignal accepted the API key for app %s (an empty batch: no event created)", o.AppID))
	case errors.As(err, &ue):
		r.fail(itemOneSignal, "not OneSignal's JSON answer: "+ue.Answer(),
			"set onesignal.url to OneSignal's API, https://api.onesignal.com (or to a proxy that forwards to it unchanged); nothing would be delivered to this URL")
	case errors.As(err, &se) && (se.Status == 401 || se.Status == 403):
		r.fail(itemOneSignal, fmt.Sprintf("API key refused: OneSignal answered %d for app %s", se.Status, o.AppID),
			"set onesignal.api_key (or onesignal.api_key_file) to the App API key of app "+o.AppID+
				" (OneSignal dashboard: Settings > Keys & IDs; an Organization key does not work)")
	case errors.As(err, &se) && se.Status == 404:
		r.fail(itemOneSignal, fmt.Sprintf("%v (app %s)", err, o.AppID),
			"check onesignal.app_id (the App ID from Settings > Keys & IDs) and onesignal.url")
	case errors.As(err, &se) && se.Status == 400 && sink.Classify(err) == sink.BadRequest:
		// OneSignal's JSON 400 about the (empty) request, not about the app:
		// authentication and the app lookup came first.
		r.pass(itemOneSignal, fmt.Sprintf("OneSignal accepted the API key for app %s (it refused the empty probe batch: %s; no event created)",
			o.AppID, strings.Join(se.Errors, "; ")))
	case errors.As(err, &se):
		r.fail(itemOneSignal, fmt.Sprintf("%v (app %s)", err, o.AppID),
			"check onesignal.url, onesignal.app_id and onesignal.api_key; retry later if OneSignal is failing (5xx, 429)")
	default:
		r.fail(itemOneSignal, fmt.Sprintf("cannot reach OneSignal at %s: %v", o.URL, err),
			"check onesignal.url and that this host may make HTTPS requests to it (firewall, HTTPS_PROXY)")
	}
}
