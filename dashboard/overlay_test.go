package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

func TestOverlayToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_700_000_000, 0)
	good := signOverlay(key, overlayToken{Site: "shop", Exp: now.Add(time.Hour)})
	p64, sig, _ := strings.Cut(good, ".")
	forged := strings.TrimRight(p64, "=") + "x." + sig
	tests := []struct {
		name, token string
		at          time.Time
		want        error
	}{
		{"valid", good, now, nil},
		{"expired", good, now.Add(time.Hour), errOverlayExpired},
		{"another key", signOverlay([]byte("another key, 32 bytes long......"), overlayToken{Site: "shop", Exp: now.Add(time.Hour)}), now, errOverlayToken},
		{"payload changed", forged, now, errOverlayToken},
		{"no signature", p64, now, errOverlayToken},
		{"not base64", "!!.!!", now, errOverlayToken},
		{"empty", "", now, errOverlayToken},
		{"too long", strings.Repeat("a", 600) + "." + sig, now, errOverlayToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verifyOverlay(key, tt.token, tt.at)
			if err != tt.want {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if err == nil && (got.Site != "shop" || !got.Exp.Equal(now.Add(time.Hour))) {
				t.Errorf("token %+v", got)
			}
		})
	}
}

// TestOverlayLinkAndStream: the dashboard's link sends the admin to the
// site's page with a token; the token opens that site's heat stream from
// the site's own origin, live, and nothing else.
func TestOverlayLinkAndStream(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password, MaxOverlayStreamsPerSite: 1})
	admin := d.login(t)
	if err := d.ns.Stores.Sites.Put(context.Background(), store.Site{Key: "shop", Origins: []string{"https://shop.example"}}); err != nil {
		t.Fatal(err)
	}
	var loc *url.URL
	for deadline := time.Now().Add(5 * time.Second); loc == nil; time.Sleep(20 * time.Millisecond) {
		resp, err := admin.Get(d.url + "/sites/shop/overlay?path=/pricing")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusSeeOther {
			loc, _ = url.Parse(resp.Header.Get("Location"))
		} else if time.Now().After(deadline) {
			t.Fatalf("overlay link: %s", resp.Status)
		}
	}
	frag, _ := url.ParseQuery(loc.Fragment)
	token := frag.Get("pulse-heatmap")
	if loc.Scheme+"://"+loc.Host+loc.Path != "https://shop.example/pricing" || token == "" || frag.Get("pulse-dashboard") != d.url {
		t.Fatalf("overlay link to %s", loc)
	}
	for path, want := range map[string]int{
		"/sites/shop/overlay?path=//evil.example": http.StatusBadRequest,
		"/sites/shop/overlay?path=pricing":        http.StatusBadRequest,
		"/sites/nosuch/overlay?path=/":            http.StatusConflict,
	} {
		resp, err := admin.Get(d.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}

	open := func(token, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", d.url+"/overlay/heat?token="+url.QueryEscape(token), nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req) // no cookie: the token is the authority
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, tt := range []struct {
		name, token, origin string
		want                int
	}{
		{"another origin", token, "https://evil.example", http.StatusForbidden},
		{"no token", "", "https://shop.example", http.StatusUnauthorized},
		{"a forged token", token + "x", "https://shop.example", http.StatusUnauthorized},
	} {
		if resp := open(tt.token, tt.origin); resp.StatusCode != tt.want {
			body, _ := io.ReadAll(resp.Body)
			t.Errorf("%s: %s, want %d: %s", tt.name, resp.Status, tt.want, body)
		}
	}
	resp := open(token, "https://shop.example")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Fatalf("heat stream: %s, CORS %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	r := bufio.NewReader(resp.Body)
	next := func() event.HeatPanel {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				var hp event.HeatPanel
				if err := json.Unmarshal([]byte(v), &hp); err != nil {
					t.Fatal(err)
				}
				return hp
			}
		}
	}
	if hp := next(); hp.Site != "shop" || len(hp.Pages) != 0 {
		t.Fatalf("first heat panel %+v, want shop's empty one", hp)
	}
	publish := func(site string, version uint64) {
		hp := event.HeatPanel{Site: site, Version: version, Pages: []event.PageHeat{{Path: "/pricing"}}}
		hp.Pages[0].Widths[event.WidthDesktop].Clicks = []event.HeatCell{{Col: 3, Row: 4, N: version}}
		data, _ := json.Marshal(hp)
		if err := d.ns.NC.Publish(event.DashSubject(site, event.PanelHeat), data); err != nil {
			t.Fatal(err)
		}
	}
	publish("other", 5) // not this token's site
	publish("shop", 7)
	if hp := next(); hp.Site != "shop" || hp.Version != 7 || hp.Pages[0].Widths[event.WidthDesktop].Clicks[0].N != 7 {
		t.Fatalf("live heat panel %+v", hp)
	}
	// One overlay per site here: a second is refused while it is open.
	if resp := open(token, "https://shop.example"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a second overlay of the site: %s", resp.Status)
	}
}
