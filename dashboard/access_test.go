package dashboard

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

// TestLoginNextStaysOnTheServer: the redirect after login never leaves
// the server, however the next path is dressed up (a tab is what browsers
// drop, making "/\t/evil.example" into "//evil.example").
func TestLoginNextStaysOnTheServer(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	for _, next := range []string{"/%09/evil.example", "/%0a/evil.example", "/%5C/evil.example", "//evil.example", "https://evil.example"} {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, CheckRedirect: noRedirect}
		body := "username=admin&password=" + url.QueryEscape(password) + "&next=" + next
		resp, err := c.Post(d.url+"/login", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("next=%s: %s to %q, want a redirect to /", next, resp.Status, loc)
		}
	}
	// A real path is kept.
	if got := localPath("/sites/shop?x=1#top"); got != "/sites/shop?x=1#top" {
		t.Errorf("localPath of a real path: %q", got)
	}
}

// TestAdminPasswordOnlyAtFirstStart: the configured admin password makes
// the account at the first start; a password changed in the dashboard
// survives a restart with the old setting, unless the reset is asked for.
func TestAdminPasswordOnlyAtFirstStart(t *testing.T) {
	ns := natstest.Run(t)
	start := func(cfg Config) *Server {
		cfg = onServer(cfg, ns)
		cfg.PasswordCost = bcrypt.MinCost
		cfg.Logger = slog.New(slog.DiscardHandler)
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		_ = s.Shutdown()
		return s
	}
	ctx := context.Background()
	s := start(Config{AdminPassword: "first-password"})
	if err := s.auth.putAccount(ctx, store.Account{User: adminUser, Admin: true}, "changed-in-the-ui"); err != nil {
		t.Fatal(err)
	}
	s = start(Config{AdminPassword: "first-password"})
	if _, err := s.auth.login(ctx, adminUser, "changed-in-the-ui"); err != nil {
		t.Errorf("the password changed in the dashboard: %v", err)
	}
	if _, err := s.auth.login(ctx, adminUser, "first-password"); err == nil {
		t.Error("a restart put the configured password back")
	}
	s = start(Config{AdminPassword: "reset-password", ResetAdminPassword: true})
	if _, err := s.auth.login(ctx, adminUser, "reset-password"); err != nil {
		t.Errorf("after a reset: %v", err)
	}
}

// openStream opens path as c and returns a channel that closes when the
// stream ends.
func openStream(t *testing.T, c *http.Client, u string) <-chan struct{} {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body))
	}()
	return ended
}

func waitEnded(t *testing.T, ended <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatalf("the stream is still open after %s", what)
	}
}

func stillOpen(t *testing.T, ended <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ended:
		t.Fatalf("the stream ended after %s", what)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestStreamsEndWithTheirAccess: an open stream ends once its session no
// longer grants it: logout, a new password, the user deleted, the site's
// grant or the admin right taken away. A user made again under the same
// name gets neither the old sessions nor the old tokens back.
func TestStreamsEndWithTheirAccess(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password, AccessRecheck: 50 * time.Millisecond})
	admin := d.login(t)
	for _, site := range []string{"shop", "demo"} {
		if resp, err := admin.PostForm(d.url+"/sites", url.Values{"key": {site}}); err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("add site %s: %v %v", site, resp, err)
		}
	}
	d.publishOverview(t, event.Overview{Site: "shop", Version: 1})
	saveUser := func(form url.Values) {
		t.Helper()
		resp, err := admin.PostForm(d.url+"/users", form)
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save user %v: %v %v", form, resp, err)
		}
		resp.Body.Close()
	}

	ann := d.grantedUser(t, admin)
	ended := openStream(t, ann, d.url+"/sse?site=shop")
	saveUser(url.Values{"user": {"ann"}, "sites": {"shop", "demo"}}) // a grant more, no new password
	stillOpen(t, ended, "a grant was added")
	saveUser(url.Values{"user": {"ann"}, "sites": {"demo"}})
	waitEnded(t, ended, "the site's grant was taken away")

	saveUser(url.Values{"user": {"ann"}, "sites": {"shop"}})
	ended = openStream(t, ann, d.url+"/sse?site=shop")
	saveUser(url.Values{"user": {"ann"}, "password": {"ann-password-2"}, "sites": {"shop"}})
	waitEnded(t, ended, "a new password")
	if resp, _ := ann.Get(d.url + "/sse?site=shop"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session from before the new password: %s, want 401", resp.Status)
	}

	ann = d.grantedUser(t, admin) // logs in with ann-password-1 again
	ended = openStream(t, ann, d.url+"/sse?site=shop")
	if resp, err := ann.Post(d.url+"/logout", "application/x-www-form-urlencoded", nil); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	waitEnded(t, ended, "logout")

	// A token and a session, then the user deleted and made again.
	ann = d.grantedUser(t, admin)
	resp, err := admin.PostForm(d.url+"/tokens", url.Values{"name": {"alerts"}, "user": {"ann"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`pulse_[A-Za-z0-9_-]{32}`).FindString(string(body))
	ended = openStream(t, ann, d.url+"/sse?site=shop")
	if resp, err := admin.PostForm(d.url+"/users/ann/delete", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %v %v", resp, err)
	}
	waitEnded(t, ended, "the user was deleted")
	d.grantedUser(t, admin) // ann again, same name and password
	if resp, _ := ann.Get(d.url + "/sse?site=shop"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session of the deleted ann: %s, want 401", resp.Status)
	}
	req, _ := http.NewRequest("GET", d.url+"/api/v1/stats?site=shop", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a token of the deleted ann: %v %v, want 401", resp.Status, err)
	}

	// An admin's system stream ends when the admin right goes.
	saveUser(url.Values{"user": {"bob"}, "password": {"bob-password-1"}, "admin": {"on"}})
	jar, _ := cookiejar.New(nil)
	bob := &http.Client{Jar: jar, CheckRedirect: noRedirect}
	if resp, err := bob.PostForm(d.url+"/login", url.Values{"username": {"bob"}, "password": {"bob-password-1"}}); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob's login: %v %v", resp, err)
	}
	ended = openStream(t, bob, d.url+"/sse/system")
	saveUser(url.Values{"user": {"bob"}})
	waitEnded(t, ended, "the admin right was taken away")
}

// TestStreamsPerUserAndNode: one user's open streams are bounded (429),
// and so are the node's (503); a closed stream gives its place back.
func TestStreamsPerUserAndNode(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password, MaxStreamsPerUser: 3, MaxStreams: 5})
	admin := d.login(t)
	if resp, err := admin.PostForm(d.url+"/sites", url.Values{"key": {"shop"}}); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add site: %v %v", resp, err)
	}
	ann := d.grantedUser(t, admin)
	open := func(c *http.Client, want int) context.CancelFunc {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/sse?site=shop", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Fatalf("stream: %s, want %d", resp.Status, want)
		}
		if want != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "streams") {
				t.Errorf("refusal %d: Retry-After %q, body %s", want, resp.Header.Get("Retry-After"), body)
			}
			return cancel
		}
		go func() { _, _ = io.Copy(io.Discard, resp.Body) }()
		return cancel
	}
	first := open(admin, http.StatusOK)
	open(admin, http.StatusOK)
	open(admin, http.StatusOK)
	open(admin, http.StatusTooManyRequests) // the admin's fourth
	open(ann, http.StatusOK)
	open(ann, http.StatusOK)
	open(ann, http.StatusServiceUnavailable) // the node's sixth

	first()
	// The server sees the stream end once the client's connection closes.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/sse?site=shop", nil)
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream's place is not given back: %s", resp.Status)
		}
	}
}
