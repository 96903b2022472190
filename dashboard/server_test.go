package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/pulse-analytics/pulse/clientaddr"
	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

const password = "s3cret-for-tests"

type testDash struct {
	srv *Server
	url string
	ns  *natstest.Server
}

func startDash(t testing.TB, cfg Config) *testDash {
	t.Helper()
	ns := natstest.Run(t)
	cfg = onServer(cfg, ns)
	// Cheap hashes: the tests log in often, under the race detector.
	cfg.PasswordCost = bcrypt.MinCost
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		_ = s.Shutdown()
		hs.Close()
	})
	return &testDash{srv: s, url: hs.URL, ns: ns}
}

// onServer is cfg with the connection and stores of ns.
func onServer(cfg Config, ns *natstest.Server) Config {
	cfg.JetStream, cfg.Subscriber = ns.JS, ns.NC
	st := ns.Stores
	cfg.Accounts, cfg.Sessions, cfg.Sites, cfg.Views, cfg.Nodes = st.Accounts, st.Sessions, st.Sites, st.Views, st.Nodes
	return cfg
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (d *testDash) login(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: noRedirect}
	resp, err := c.PostForm(d.url+"/login", url.Values{"username": {"admin"}, "password": {password}, "next": {"/sites/demo"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/sites/demo" {
		t.Fatalf("login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	return c
}

// publishOverview stores and announces a site's overview the way the
// aggregator does.
func (d *testDash) publishOverview(t *testing.T, ov event.Overview) {
	t.Helper()
	data, _ := json.Marshal(ov)
	if err := d.ns.Stores.Views.PutPanel(context.Background(), ov.Site, event.PanelOverview, data); err != nil {
		t.Fatal(err)
	}
	if err := d.ns.NC.Publish(event.DashSubject(ov.Site, event.PanelOverview), data); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password, APIToken: "tok"})
	anon := &http.Client{CheckRedirect: noRedirect}
	get := func(c *http.Client, path string, h http.Header) *http.Response {
		req, _ := http.NewRequest("GET", d.url+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	web := d.login(t)
	tests := []struct {
		name     string
		client   *http.Client
		path     string
		header   http.Header
		status   int
		location string
	}{
		{"page without session redirects to login", anon, "/sites/demo", nil, http.StatusSeeOther, "/login?next=%2Fsites%2Fdemo"},
		{"sse without session is 401", anon, "/sse?site=demo", nil, http.StatusUnauthorized, ""},
		{"api without credentials is 401", anon, "/api/v1/stats?site=demo", nil, http.StatusUnauthorized, ""},
		{"api with wrong token is 401", anon, "/api/v1/stats?site=demo", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized, ""},
		{"api with token", anon, "/api/v1/stats?site=demo", http.Header{"Authorization": {"Bearer tok"}}, http.StatusOK, ""},
		{"sse does not take the api token", anon, "/sse?site=demo", http.Header{"Authorization": {"Bearer tok"}}, http.StatusUnauthorized, ""},
		{"api with session", web, "/api/v1/stats?site=demo", nil, http.StatusOK, ""},
		{"api with bad site", web, "/api/v1/stats?site=..", nil, http.StatusBadRequest, ""},
		{"page with session", web, "/sites/demo", nil, http.StatusOK, ""},
		{"sites page", web, "/", nil, http.StatusOK, ""},
		{"login page is public", anon, "/login", nil, http.StatusOK, ""},
		{"assets are public", anon, "/static/vendor/echarts.min.js", nil, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(tt.client, tt.path, tt.header)
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
				t.Errorf("got %s to %q, want %d to %q", resp.Status, resp.Header.Get("Location"), tt.status, tt.location)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		for _, form := range []url.Values{
			{"username": {"admin"}, "password": {"wrong"}},
			{"username": {"nobody"}, "password": {password}},
			{"username": {"admin"}, "password": {strings.Repeat("x", 100)}},
		} {
			resp, err := anon.PostForm(d.url+"/login", form)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("Wrong username or password.")) || resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("%v: %s, cookie %q", form["username"], resp.Status, resp.Header.Get("Set-Cookie"))
			}
		}
	})
	t.Run("login from another origin is refused", func(t *testing.T) {
		req, _ := http.NewRequest("POST", d.url+"/login", strings.NewReader(url.Values{"username": {"admin"}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site login: %s, want 403", resp.Status)
		}
	})
	t.Run("open redirect refused", func(t *testing.T) {
		for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n//evil.example", "javascript:alert(1)", "/x\x7f"} {
			if got := localPath(next); got != "/" {
				t.Errorf("localPath(%q) = %q", next, got)
			}
		}
	})
	t.Run("logout ends the session", func(t *testing.T) {
		c := d.login(t)
		u, _ := url.Parse(d.url)
		old := c.Jar.Cookies(u)
		resp, err := c.Post(d.url+"/logout", "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(c.Jar.Cookies(u)) != 0 {
			t.Errorf("browser keeps the cookie after logout")
		}
		// The old cookie is dead on the server too, not just in the jar.
		if r := get(anon, "/sites/demo", http.Header{"Cookie": {old[0].String()}}); r.StatusCode != http.StatusSeeOther {
			t.Errorf("old session after logout: %s", r.Status)
		}
	})
}

func TestGeneratedPasswordOnlyOnce(t *testing.T) {
	ns := natstest.Run(t)
	var logs bytes.Buffer
	start := func() {
		s, err := New(onServer(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, ns))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		_ = s.Shutdown()
	}
	start()
	start()
	if n := strings.Count(logs.String(), "password="); n != 1 {
		t.Errorf("password printed %d times, want once:\n%s", n, logs.String())
	}
}

func TestSSE(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	web := d.login(t)
	d.publishOverview(t, event.Overview{Site: "demo", Version: 7, Events: 70, Visitors: 2})

	open := func(lastID string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest("GET", d.url+"/sse?site=demo", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := web.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Accel-Buffering") != "no" {
			t.Fatalf("headers %v", resp.Header)
		}
		return resp, bufio.NewReader(resp.Body)
	}
	next := func(r *bufio.Reader) (id string, ov event.Overview) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				var u struct{ Panel event.Overview }
				if err := json.Unmarshal([]byte(v), &u); err != nil {
					t.Fatal(err)
				}
				return id, u.Panel
			}
		}
	}

	_, r := open("")
	if line, _ := r.ReadString('\n'); line != "retry: 2000\n" {
		t.Fatalf("first line %q, want retry", line)
	}
	if id, ov := next(r); id != "7" || ov.Events != 70 {
		t.Fatalf("initial event %s %+v", id, ov)
	}
	d.publishOverview(t, event.Overview{Site: "demo", Version: 8, Events: 80})
	if id, ov := next(r); id != "8" || ov.Events != 80 {
		t.Fatalf("update %s %+v", id, ov)
	}
	// A stale update (lower version) is never sent.
	d.publishOverview(t, event.Overview{Site: "demo", Version: 5, Events: 50})
	d.publishOverview(t, event.Overview{Site: "demo", Version: 9, Events: 90})
	if id, _ := next(r); id != "9" {
		t.Fatalf("got event %s after a stale one, want 9", id)
	}
	// A browser resuming with the newest id gets no repeat, only what is new.
	_, r2 := open("9")
	d.publishOverview(t, event.Overview{Site: "demo", Version: 10, Events: 100})
	if id, _ := next(r2); id != "10" {
		t.Fatalf("resumed stream started at %s, want 10", id)
	}
	// Shutdown tells browsers to come back soon and ends the stream.
	_ = d.srv.Shutdown()
	rest, _ := io.ReadAll(r)
	if !strings.Contains(string(rest), "retry: 500") {
		t.Errorf("no retry hint at shutdown: %q", rest)
	}
}

// TestSlowClientSkipsAhead: a client that does not read holds one pending
// update, the newest; the hub never blocks and never queues more.
func TestSlowClientSkipsAhead(t *testing.T) {
	m, _ := newMetrics(prometheus.NewRegistry())
	h := newHub(m)
	slow := h.subscribe(siteKey("demo"))
	fast := h.subscribe(siteKey("demo"))
	got := make(chan uint64, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range fast.mailbox {
			got <- u.version
			if u.version == 1000 {
				return
			}
		}
	}()
	for v := uint64(1); v <= 1000; v++ {
		h.publish(siteKey("demo"), &update{version: v})
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("fast client did not get the last update")
	}
	if len(slow.mailbox) != 1 {
		t.Fatalf("slow client holds %d updates, want 1", len(slow.mailbox))
	}
	if u := <-slow.mailbox; u.version != 1000 {
		t.Errorf("slow client's pending update is %d, want the newest (1000)", u.version)
	}
}

// TestOverviewPageGolden renders the overview page of a fixed overview and
// compares it with testdata/overview_page.golden (go test -update rewrites it).
func TestOverviewPageGolden(t *testing.T) {
	ov := event.Overview{
		Site: "demo", Version: 3, Events: 12345, Visitors: 2, Arrivals: 5, Departures: 3,
		ByKind:      map[string]uint64{"move": 12000, "click": 300, "scroll": 45},
		PerSecond:   []event.Point{{T: 1_700_000_000_000, N: 4}, {T: 1_700_000_001_000, N: 9}},
		PerMinute:   []event.MinutePoint{{T: 1_699_999_940_000, Events: 50, ByKind: map[string]uint64{"move": 45, "click": 5}, Arrivals: 2}, {T: 1_700_000_000_000, Events: 90, ByKind: map[string]uint64{"move": 80, "click": 10}, Arrivals: 3}},
		TopVisitors: []event.VisitorCount{{Visitor: "ann", Events: 9000, LastSeen: 1_700_000_001_000}, {Visitor: "<bob>", Events: 3345, LastSeen: 1_700_000_000_500}},
		RageClicks:  1,
		RecentRage:  []event.RageClick{{Path: "/checkout", Target: "button.pay", Clicks: 4, T: 1_700_000_000_900}},
		Pages: []event.PageStats{{
			Path: "/checkout", Events: 300, Clicks: 40, RageClicks: 1, DeadClicks: 2, PageViews: 4, ScrollReached: [10]uint64{4, 4, 3, 2, 1},
			Elements:  []event.ElementStats{{Selector: "button.pay", Clicks: 30, RageClicks: 1}, {Selector: "div.help>span", Clicks: 2, DeadClicks: 2}},
			ClickHeat: []event.HeatCell{{Col: 20, Row: 16, N: 9}}, MoveHeat: []event.HeatCell{{Col: 3, Row: 2, N: 40}, {Col: 4, Row: 2, N: 7}},
		}},
		Updated: 1_700_000_002_000,
	}
	told := []store.NodeStatus{{Kind: "ingest", ID: "ingest-1", Updated: 1_700_000_001_500, Figures: map[string]float64{
		"load_level": 1, "sample_ms": 100, "flush_ms": 2000, event.CallInFigure(0): 12, "callin_stop": 1,
	}}}
	// IBM moves 1 % in its second minute: a mark on the attention chart.
	quotes := &event.QuotesPanel{Symbols: []event.SymbolPanel{{
		Last:    event.Quote{Symbol: "IBM", Price: 101, Time: 1_700_000_001_000},
		Candles: []event.Candle{{T: 1_699_999_940_000, Close: 100}, {T: 1_700_000_000_000, Close: 101}},
	}}}
	var buf bytes.Buffer
	if err := overviewPage(&principal{User: "admin", Admin: true}, ov, told, quotes).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	for _, want := range []string{`data-testid="events-total">12` + "\u2009" + `345<`, `data-testid="visitors">2<`, `&lt;bob&gt;`, `"id":"eps-move"`, `id="site-charts"`, `id="page-charts"`,
		`<option value="/checkout">`, `data-testid="rage-clicks">1<`, `"id":"click-heat"`, `button.pay`,
		`data-selector="div.help&gt;span"`, `data-testid="element-dead">2<`} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	golden := filepath.Join("testdata", "overview_page.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("page differs from %s; run go test -update and review the diff", golden)
	}
}

func TestSitesRegistry(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password, TrackerURL: "https://in.example"})
	web := d.login(t)
	post := func(form url.Values) (*http.Response, string) {
		resp, err := web.PostForm(d.url+"/sites", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tt := range []struct {
		name string
		form url.Values
		want string
	}{
		{"bad key", url.Values{"key": {"Shop!"}}, "site key"},
		{"bad origin", url.Values{"key": {"shop"}, "origins": {"shop.example"}}, "want scheme://host"},
		{"origin with a path", url.Values{"key": {"shop"}, "origins": {"https://shop.example/cart"}}, "want scheme://host"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(tt.form)
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tt.want) {
				t.Errorf("%s: %s", resp.Status, body)
			}
		})
	}
	resp, _ := post(url.Values{"key": {"shop"}, "name": {"Shop"}, "origins": {"https://shop.example/\nhttp://localhost:3000"}, "respectDNT": {"on"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %s", resp.Status)
	}
	sites, err := d.ns.Stores.Sites.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var site store.Site
	for _, s := range sites {
		if s.Key == "shop" {
			site = s
		}
	}
	if site.Name != "Shop" || strings.Join(site.Origins, " ") != "https://shop.example http://localhost:3000" || !site.RespectDNT {
		t.Errorf("stored %+v", site)
	}
	page, err := web.Get(d.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	want := `&lt;script defer src=&#34;https://in.example/static/pulse.js&#34; data-site=&#34;shop&#34; data-respect-dnt&gt;&lt;/script&gt;`
	if !strings.Contains(string(body), want) {
		t.Errorf("sites page lacks the snippet %s", want)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1\u2009000", 1234567: "1\u2009234\u2009567"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

// grantedUser makes a non-admin user who sees only site shop, and returns
// a logged-in client.
func (d *testDash) grantedUser(t *testing.T, admin *http.Client) *http.Client {
	t.Helper()
	resp, err := admin.PostForm(d.url+"/users", url.Values{"user": {"ann"}, "password": {"ann-password-1"}, "sites": {"shop"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create user: %s", resp.Status)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: noRedirect}
	resp, err = c.PostForm(d.url+"/login", url.Values{"username": {"ann"}, "password": {"ann-password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("ann's login: %s", resp.Status)
	}
	return c
}

func TestPerSiteAccessAndTokens(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	admin := d.login(t)
	for _, site := range []string{"shop", "demo"} {
		if resp, err := admin.PostForm(d.url+"/sites", url.Values{"key": {site}}); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("add site %s: %v %v", site, resp, err)
		}
	}
	ann := d.grantedUser(t, admin)
	status := func(c *http.Client, method, path string, h http.Header) int {
		req, _ := http.NewRequest(method, d.url+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		path string
		want int
	}{
		{"/sites/shop", 200}, {"/sites/demo", 403},
		{"/api/v1/stats?site=shop", 200}, {"/api/v1/stats?site=demo", 403},
		{"/sse?site=demo", 403},
		{"/quotes", 200},
		{"/users", 403}, {"/system", 403}, {"/sse/system", 403},
	} {
		if got := status(ann, "GET", tt.path, nil); got != tt.want {
			t.Errorf("ann GET %s: %d, want %d", tt.path, got, tt.want)
		}
	}
	if got := status(ann, "POST", "/sites", nil); got != http.StatusForbidden {
		t.Errorf("ann adds a site: %d", got)
	}
	resp, _ := ann.Get(d.url + "/")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `/sites/shop`) || strings.Contains(string(body), `/sites/demo`) || strings.Contains(string(body), "site-form") {
		t.Errorf("ann's sites page shows what she cannot see")
	}

	// A token acts for its user, with her grants, until revoked.
	resp, err := admin.PostForm(d.url+"/tokens", url.Values{"name": {"alerts"}, "user": {"ann"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`pulse_[A-Za-z0-9_-]{32}`).FindString(string(body))
	if token == "" {
		t.Fatalf("no token shown: %s", body)
	}
	bearer := http.Header{"Authorization": {"Bearer " + token}}
	anon := &http.Client{}
	if got := status(anon, "GET", "/api/v1/stats?site=shop", bearer); got != 200 {
		t.Errorf("token on shop: %d", got)
	}
	if got := status(anon, "GET", "/api/v1/stats?site=demo", bearer); got != 403 {
		t.Errorf("token on demo: %d", got)
	}
	toks, _ := d.srv.auth.users.Tokens(context.Background(), "ann")
	if len(toks) != 1 {
		t.Fatalf("tokens %+v", toks)
	}
	if resp, err := admin.PostForm(d.url+"/tokens/"+toks[0].ID+"/revoke", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	if got := status(anon, "GET", "/api/v1/stats?site=shop", bearer); got != 401 {
		t.Errorf("revoked token: %d", got)
	}

	// Deleting a user ends her sessions.
	if resp, err := admin.PostForm(d.url+"/users/ann/delete", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %v %v", resp, err)
	}
	if got := status(ann, "GET", "/sites/shop", nil); got != http.StatusSeeOther {
		t.Errorf("deleted user's page: %d, want a redirect to login", got)
	}
	// Validation of the user form.
	for _, form := range []url.Values{
		{"user": {"Bad Name"}, "password": {"long-enough-1"}},
		{"user": {"bob"}, "password": {"short"}},
		{"user": {"bob"}},
		{"user": {"admin"}, "password": {""}}, // taking one's own admin rights
	} {
		if resp, _ := admin.PostForm(d.url+"/users", form); resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("user form %v: %s", form, resp.Status)
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	// No refill during the test, however slow the machine.
	d := startDash(t, Config{AdminPassword: password, LoginEvery: time.Hour})
	c := &http.Client{CheckRedirect: noRedirect}
	codes := map[int]int{}
	for range 12 {
		resp, err := c.PostForm(d.url+"/login", url.Values{"username": {"admin"}, "password": {"guess"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[http.StatusUnauthorized] != 10 || codes[http.StatusTooManyRequests] != 2 {
		t.Errorf("answers %v; want 10 refusals, then 429", codes)
	}
	// Even the right password waits now.
	resp, _ := c.PostForm(d.url+"/login", url.Values{"username": {"admin"}, "password": {password}})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("right password while limited: %s", resp.Status)
	}
}

// TestLoginRateLimitBehindAProxy: behind a trusted proxy the login limit
// counts the client X-Forwarded-For names, so one guesser does not lock
// out everyone else behind the proxy; from an untrusted peer the header
// is ignored, so a guesser cannot step around the limit by making up
// addresses.
func TestLoginRateLimitBehindAProxy(t *testing.T) {
	loopback, err := clientaddr.Parse("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		proxies *clientaddr.Resolver
		// the second client's answer, after the first used up its logins
		other int
	}{
		{"trusted proxy", loopback, http.StatusUnauthorized},
		{"no trusted proxy", nil, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDash(t, Config{AdminPassword: password, LoginEvery: time.Hour, ClientAddrs: tc.proxies})
			guess := func(client string) int {
				req, _ := http.NewRequest("POST", d.url+"/login", strings.NewReader(url.Values{"username": {"admin"}, "password": {"guess"}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Forwarded-For", client)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			for range 10 {
				guess("198.51.100.7")
			}
			if got := guess("198.51.100.7"); got != http.StatusTooManyRequests {
				t.Fatalf("the guesser's 11th: %d, want 429", got)
			}
			if got := guess("203.0.113.9"); got != tc.other {
				t.Errorf("another client's first: %d, want %d", got, tc.other)
			}
		})
	}
}

func TestSystemPage(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.ns.Stores.Nodes.Report(ctx, "ingest", "n1", func() map[string]float64 {
		return map[string]float64{"connections": 12, "load_level": 1, "sample_ms": 100, "flush_ms": 2000, "callin_le_1s": 37, "callin_stop": 2}
	}, slog.New(slog.DiscardHandler))
	admin := d.login(t)
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := admin.Get(d.url + "/system")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if body = string(b); strings.Contains(body, "n1") {
			break
		}
	}
	for _, want := range []string{`data-testid="nodes"`, "<code>n1</code>", "connections</span> 12", "ACTIVITY", "QUOTES", `data-testid="jetstream"`,
		`data-testid="told"`, `data-testid="sample-ms">100 ms<`, `data-testid="flush-ms">2` + "\u2009" + `000 ms<`, `data-callin="callin_le_1s">37/s<`, `data-callin="callin_stop">2/s<`} {
		if !strings.Contains(body, want) {
			t.Errorf("system page lacks %q", want)
		}
	}
}

// TestSitePageShowsWhatClientsAreTold: what each ingest node reports it
// tells clients reaches a site page's stream with the site's next update;
// a node that stopped reporting is left out.
func TestSitePageShowsWhatClientsAreTold(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	web := d.login(t)
	put := func(id string, updated time.Time, sampleMs float64) {
		t.Helper()
		st := store.NodeStatus{Kind: "ingest", ID: id, Updated: updated.UnixMilli(), Figures: map[string]float64{"sample_ms": sampleMs, "flush_ms": 1000}}
		if err := d.ns.Stores.Nodes.Put(context.Background(), st); err != nil {
			t.Fatal(err)
		}
	}
	put("fresh-node", time.Now(), 400)
	put("gone-node", time.Now().Add(-time.Hour), 50)

	resp, err := web.Get(d.url + "/sse?site=demo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for version := uint64(1); ; version++ {
		if version > 50 {
			t.Fatal("no update showed the fresh node")
		}
		d.publishOverview(t, event.Overview{Site: "demo", Version: version})
		var told string
		for told == "" {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				var u struct{ Fragments map[string]string }
				if err := json.Unmarshal([]byte(v), &u); err != nil {
					t.Fatal(err)
				}
				told = u.Fragments["told"]
			}
		}
		if !strings.Contains(told, `data-node="fresh-node"`) {
			time.Sleep(50 * time.Millisecond) // the watch has not seen it yet
			continue
		}
		if !strings.Contains(told, "400 ms") || strings.Contains(told, "gone-node") {
			t.Errorf("told fragment: %s", told)
		}
		break
	}
}

// TestLivePanelsReachTheSiteStream: a live panel goes to the site's
// streams between overviews, as an event without an id; an older one is
// dropped, and a browser resuming gets the last whole panel, not a live one.
func TestLivePanelsReachTheSiteStream(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	web := d.login(t)
	d.publishOverview(t, event.Overview{Site: "demo", Version: 10, Events: 5})
	resp, err := web.Get(d.url + "/sse?site=demo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	next := func() (id, name string, events uint64) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimSpace(line[4:])
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimSpace(line[7:])
			case strings.HasPrefix(line, "data: "):
				var u struct{ Panel struct{ Events uint64 } }
				if err := json.Unmarshal([]byte(line[6:]), &u); err != nil {
					t.Fatal(err)
				}
				return id, name, u.Panel.Events
			}
		}
	}
	if id, name, n := next(); id != "10" || name != "overview" || n != 5 {
		t.Fatalf("first event %s %s %d", id, name, n)
	}
	live := func(version, events uint64) {
		data, _ := json.Marshal(event.LivePanel{Site: "demo", Version: version, Events: events})
		if err := d.ns.NC.Publish(event.DashSubject("demo", event.PanelLive), data); err != nil {
			t.Fatal(err)
		}
	}
	live(9, 4) // older than the overview: dropped
	live(11, 8)
	if id, name, n := next(); id != "" || name != "live" || n != 8 {
		t.Fatalf("live event: id %q, %s, %d events", id, name, n)
	}
	d.publishOverview(t, event.Overview{Site: "demo", Version: 12, Events: 9})
	if id, name, n := next(); id != "12" || name != "overview" || n != 9 {
		t.Fatalf("overview after the live panel: %s %s %d", id, name, n)
	}
	live(13, 10)
	if _, name, n := next(); name != "live" || n != 10 {
		t.Fatalf("second live event: %s %d", name, n)
	}
	// A browser coming back with the last whole panel's id gets nothing
	// again; one without an id gets the whole panel, not the live one.
	req, _ := http.NewRequest("GET", d.url+"/sse?site=demo", nil)
	fresh, err := web.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Body.Close()
	r = bufio.NewReader(fresh.Body)
	if id, name, n := next(); id != "12" || name != "overview" || n != 9 {
		t.Fatalf("a new stream starts with %s %s %d, want the overview 12", id, name, n)
	}
}
