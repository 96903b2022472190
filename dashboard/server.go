// Package dashboard is the admins' window onto Pulse: login, pages rendered
// with templ, charts as go-echarts option objects, live updates by
// Server-Sent Events, and a JSON API with the same numbers. It is a
// stateless view: it reads the aggregator's latest panels from NATS KV and
// follows their updates on core NATS, so any number of replicas can run.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/a-h/templ"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/pulse-analytics/pulse/clientaddr"
	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/static"
	"github.com/pulse-analytics/pulse/store"
)

// Subscriber delivers panel updates.
type Subscriber interface {
	// Subscribe calls cb, one message at a time, for every message on
	// subject (wildcards allowed) until the subscription is closed.
	Subscribe(subject string, cb nats.MsgHandler) (*nats.Subscription, error)
}

// Config configures a Server. Zero fields take the stated defaults.
type Config struct {
	// JetStream is where the activity stream is, which visitor pages
	// follow, and whose figures the System page shows. Required.
	JetStream jetstream.JetStream
	// The stores of accounts, sessions, sites, latest panels and the
	// running parts' statuses. Required.
	Accounts *store.Accounts
	Sessions *store.Sessions
	Sites    *store.Sites
	Views    *store.Views
	Nodes    *store.Nodes
	// Subscriber delivers panel updates. Required.
	Subscriber Subscriber
	// AdminPassword, when set, is the admin's password at the first
	// start. When empty, the first start creates a random one and logs
	// it once. Later starts leave the account alone (a password changed
	// in the dashboard stays), unless ResetAdminPassword is set.
	AdminPassword      string
	ResetAdminPassword bool
	// APIToken, when set, is accepted as "Authorization: Bearer" on the API.
	APIToken string
	// TrackerURL is the public URL of the ingest nodes, used in the
	// snippets the Sites page shows. Default: https://YOUR-INGEST-HOST,
	// which the admin edits in the copied snippet.
	TrackerURL string
	// Ready reports whether NATS is usable; /readyz uses it. Default:
	// always ready.
	Ready func() error
	// LoginBurst and LoginEvery limit login attempts per address: a burst,
	// then one per interval. Defaults 10 and 6 s: enough for people who
	// mistype, far too few to guess a password.
	LoginBurst int
	LoginEvery time.Duration
	// ClientAddrs finds a request's client address, for the login limit;
	// behind a proxy, one that trusts its X-Forwarded-For. Default: the
	// connection's peer.
	ClientAddrs *clientaddr.Resolver
	// AccessRecheck is how often an open stream checks that its session
	// still holds (not logged out, expired, replaced by a new password,
	// nor its user deleted) and still grants what the stream shows; a
	// stream that lost it ends. Default 5 s.
	AccessRecheck time.Duration
	// MaxStreamsPerUser bounds the SSE streams one user has open, over
	// all their sessions (429 beyond it); MaxStreams bounds them on this
	// node (503). Defaults 64 and 10,000.
	MaxStreamsPerUser int
	MaxStreams        int
	// MaxVisitorStreamsPerUser and MaxVisitorStreams bound the visitor
	// pages open, per user (429 beyond it) and on this node (503): each
	// follows its site's activity with a consumer of its own. Defaults 8
	// and 200.
	MaxVisitorStreamsPerUser int
	MaxVisitorStreams        int
	// MaxOverlayStreamsPerSite and MaxOverlayStreams bound the heatmap
	// overlays' streams, which a token opens without a session, per site
	// (429 beyond it) and on this node (503). Defaults 50 and 1,000.
	MaxOverlayStreamsPerSite int
	MaxOverlayStreams        int
	// PasswordCost is bcrypt's cost for new passwords. Default
	// bcrypt.DefaultCost; tests lower it.
	PasswordCost int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the dashboard's metrics. Default: a private
	// registry.
	Registerer prometheus.Registerer
}

// Server serves the dashboard. Create it with New, call Start, serve
// Handler, and stop it with Shutdown.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	auth    *auth
	hub     *hub
	streams *streamSlots
	// visitorStreams bounds the visitor pages' streams besides.
	visitorStreams *streamSlots
	sub            *nats.Subscription
	quotesSub      *nats.Subscription
	// told follows what ingest nodes tell clients, for the site pages.
	told *toldWatch
	// quotes is the latest quotes panel, for the site pages' attention
	// chart; nil until loaded (quotesNow).
	quotes atomic.Pointer[event.QuotesPanel]
	// registry follows the site registry, for the overlay's links and
	// origins; overlayKey signs overlay tokens; overlayStreams bounds
	// the overlays' streams by site.
	registry       *store.SiteRegistry
	overlayKey     []byte
	overlayStreams *streamSlots
	started        atomic.Bool
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.JetStream == nil || cfg.Subscriber == nil || cfg.Accounts == nil || cfg.Sessions == nil ||
		cfg.Sites == nil || cfg.Views == nil || cfg.Nodes == nil {
		return nil, errors.New("dashboard: jetstream, subscriber and every store are required")
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.LoginBurst == 0 {
		cfg.LoginBurst = 10
	}
	if cfg.LoginEvery == 0 {
		cfg.LoginEvery = 6 * time.Second
	}
	if cfg.PasswordCost == 0 {
		cfg.PasswordCost = bcrypt.DefaultCost
	}
	if cfg.ClientAddrs == nil {
		cfg.ClientAddrs = &clientaddr.Resolver{}
	}
	if cfg.AccessRecheck == 0 {
		cfg.AccessRecheck = 5 * time.Second
	}
	if cfg.MaxStreamsPerUser == 0 {
		cfg.MaxStreamsPerUser = 64
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 10_000
	}
	if cfg.MaxVisitorStreamsPerUser == 0 {
		cfg.MaxVisitorStreamsPerUser = 8
	}
	if cfg.MaxVisitorStreams == 0 {
		cfg.MaxVisitorStreams = 200
	}
	if cfg.MaxOverlayStreamsPerSite == 0 {
		cfg.MaxOverlayStreamsPerSite = 50
	}
	if cfg.MaxOverlayStreams == 0 {
		cfg.MaxOverlayStreams = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "dashboard"),
		metrics: m,
		hub:     newHub(m),
		streams: newStreamSlots(cfg.MaxStreamsPerUser, cfg.MaxStreams),

		visitorStreams: newStreamSlots(cfg.MaxVisitorStreamsPerUser, cfg.MaxVisitorStreams),
		overlayStreams: newStreamSlots(cfg.MaxOverlayStreamsPerSite, cfg.MaxOverlayStreams),
	}, nil
}

// Start opens the buckets, makes sure the admin account exists, and follows
// panel updates.
func (s *Server) Start(ctx context.Context) error {
	s.auth = &auth{
		users: s.cfg.Accounts, sessions: s.cfg.Sessions, apiToken: s.cfg.APIToken,
		limiter: newLoginLimiter(s.cfg.LoginBurst, s.cfg.LoginEvery), cost: s.cfg.PasswordCost,
	}
	generated, err := s.auth.ensureAdmin(ctx, s.cfg.AdminPassword, s.cfg.ResetAdminPassword)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	if generated != "" {
		s.log.Warn("created the dashboard admin account; this password is shown only once (set PULSE_ADMIN_PASSWORD to choose your own)",
			"user", adminUser, "password", generated)
	}
	// The watch outlives ctx, which may only bound the start; Shutdown
	// stops it.
	if s.told, err = watchTold(ctx, s.cfg.Nodes); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	if s.overlayKey, err = overlayKey(ctx, s.cfg.Accounts); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	if s.registry, err = s.cfg.Sites.Watch(ctx, s.log); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	// One subscription for every site panel: its handler takes them in the
	// order the aggregator sent them, so a live panel never overtakes the
	// overview before it.
	s.sub, err = s.cfg.Subscriber.Subscribe(event.DashSubject("*", "*"), s.onPanel)
	if err != nil {
		return fmt.Errorf("dashboard: subscribe: %w", err)
	}
	s.quotesSub, err = s.cfg.Subscriber.Subscribe(event.SubjectQuotesPanel, s.onQuotes)
	if err != nil {
		return fmt.Errorf("dashboard: subscribe: %w", err)
	}
	s.started.Store(true)
	return nil
}

// onPanel hands a site's panel to its handler by the panel's name, the
// subject's last token. A panel of a site no stream watches is not even
// decoded: with thousands of sites, decoding every overview cost more
// than the streams of the few being watched.
func (s *Server) onPanel(msg *nats.Msg) {
	rest, _ := strings.CutPrefix(msg.Subject, "dash.")
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return
	}
	site, panel := rest[:dot], rest[dot+1:]
	key := siteKey(site)
	if panel == event.PanelHeat {
		key = heatKey(site) // the overlays'
	}
	if !s.hub.watched(key) {
		if panel != event.PanelLive {
			// Loaded afresh for the next stream (from the views
			// bucket); a stale copy must not be served to it first.
			s.hub.forget(key)
		}
		return
	}
	switch panel {
	case event.PanelOverview:
		s.onOverview(msg)
	case event.PanelLive:
		s.onLive(msg)
	case event.PanelHeat:
		s.onHeat(msg)
	}
}

// onLive sends a site's live panel to its streams, as an SSE event
// "live" without an id.
func (s *Server) onLive(msg *nats.Msg) {
	var lp event.LivePanel
	if err := event.Decode("live panel", msg.Data, &lp); err != nil || !event.ValidSite(lp.Site) {
		s.log.Warn("bad live panel", "subject", msg.Subject, "err", err)
		return
	}
	key := siteKey(lp.Site)
	// Encoded again, not copied: the data line must hold no newline.
	data, _ := json.Marshal(lp)
	frame := make([]byte, 0, len(data)+40)
	frame = append(frame, "event: live\ndata: {\"panel\":"...)
	frame = append(frame, data...)
	frame = append(frame, "}\n\n"...)
	s.hub.publish(key, &update{version: lp.Version, frame: frame, live: true})
}

func (s *Server) onOverview(msg *nats.Msg) {
	var ov event.Overview
	if err := event.Decode("overview", msg.Data, &ov); err != nil || !event.ValidSite(ov.Site) {
		s.log.Warn("bad panel update", "subject", msg.Subject, "err", err)
		return
	}
	key := siteKey(ov.Site)
	u, err := encodeUpdate(context.Background(), ov, s.told.current(time.Now()), s.quotesNow(context.Background()))
	if err != nil {
		s.log.Error("panel update", "site", ov.Site, "err", err)
		return
	}
	s.hub.publish(key, u)
}

// Figures are the dashboard's numbers for its status report.
func (s *Server) Figures() map[string]float64 {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	n := 0
	for _, cs := range s.hub.clients {
		n += len(cs)
	}
	return map[string]float64{"sse_clients": float64(n)}
}

// Ready reports whether the dashboard can serve.
func (s *Server) Ready() error {
	if !s.started.Load() {
		return errors.New("dashboard: not started")
	}
	return s.cfg.Ready()
}

// Shutdown ends the SSE streams, telling browsers to retry soon (another
// replica, or this one restarted), and stops following updates. Call it
// before http.Server.Shutdown, which waits for the streams to end.
func (s *Server) Shutdown() error {
	s.started.Store(false)
	s.hub.close()
	var errs []error
	if s.told != nil {
		errs = append(errs, s.told.stop())
	}
	if s.registry != nil {
		s.registry.Stop()
	}
	for _, sub := range []*nats.Subscription{s.sub, s.quotesSub} {
		if sub != nil {
			errs = append(errs, sub.Unsubscribe())
		}
	}
	return errors.Join(errs...)
}

// Handler serves the dashboard. State-changing requests from other origins
// are refused (CSRF protection by Fetch metadata and Origin).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", static.Handler()))
	mux.HandleFunc("GET /login", s.serveLoginForm)
	mux.HandleFunc("POST /login", s.serveLogin)
	mux.HandleFunc("POST /logout", s.serveLogout)
	mux.Handle("GET /{$}", s.page(s.serveSites))
	mux.Handle("POST /sites", s.adminPage(s.serveSaveSite))
	mux.Handle("GET /users", s.adminPage(s.serveUsers))
	mux.Handle("GET /system", s.adminPage(s.serveSystem))
	mux.Handle("GET /sse/system", s.stream(s.adminOnly(s.serveSystemSSE)))
	mux.Handle("POST /users", s.adminPage(s.serveSaveUser))
	mux.Handle("POST /users/{user}/delete", s.adminPage(s.serveDeleteUser))
	mux.Handle("POST /tokens", s.adminPage(s.serveCreateToken))
	mux.Handle("POST /tokens/{id}/revoke", s.adminPage(s.serveRevokeToken))
	mux.Handle("GET /sites/{site}", s.page(s.serveOverview))
	mux.Handle("GET /sites/{site}/visitors/{visitor}", s.page(s.serveVisitor))
	mux.Handle("GET /sse/visitor", s.stream(s.serveVisitorSSE))
	mux.Handle("GET /sites/{site}/overlay", s.page(s.serveOverlayLink))
	mux.HandleFunc("GET /overlay/heat", s.serveOverlayHeat)
	mux.Handle("GET /sse", s.stream(s.serveSSE))
	mux.Handle("GET /quotes", s.page(s.serveQuotes))
	mux.Handle("GET /sse/quotes", s.stream(s.serveQuotesSSE))
	mux.Handle("GET /api/v1/stats", s.api(s.serveStats))
	return http.NewCrossOriginProtection().Handler(mux)
}

type principalKey struct{}

// meFrom returns who the request acts for; the middleware guarantees one.
func meFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// page requires a session and sends others to the login page.
func (s *Server) page(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		me := s.auth.principalOf(r, false)
		if me == nil {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, me)))
	})
}

// adminPage is a page only admins may see.
func (s *Server) adminPage(next http.HandlerFunc) http.Handler {
	return s.page(func(w http.ResponseWriter, r *http.Request) {
		if !meFrom(r.Context()).Admin {
			http.Error(w, "only admins may do this", http.StatusForbidden)
			return
		}
		next(w, r)
	})
}

// adminOnly answers 403 to users who are not admins.
func (s *Server) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !meFrom(r.Context()).Admin {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "only admins may do this"})
			return
		}
		next(w, r)
	}
}

// stream requires a session and answers 401 without one, and 429 or 503
// beyond the open streams a user or the node may have (see streamSlots).
// The stream ends once the session no longer grants it (see keepsAccess).
func (s *Server) stream(next http.HandlerFunc) http.Handler {
	return s.authorized(func(w http.ResponseWriter, r *http.Request) {
		user := meFrom(r.Context()).User
		if !s.takeStream(w, s.streams, user, "") {
			return
		}
		defer s.streams.release(user)
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		r = r.WithContext(ctx)
		go s.keepsAccess(r, cancel)
		next(w, r)
	}, false)
}

// keepsAccess checks every AccessRecheck that r's session still acts for
// its user with the rights the stream needs (admin for a stream an admin
// opened, the site for a site's), and cancels when it does not, until r
// ends.
func (s *Server) keepsAccess(r *http.Request, cancel context.CancelFunc) {
	before := meFrom(r.Context())
	site := r.URL.Query().Get("site")
	t := time.NewTicker(s.cfg.AccessRecheck)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		now, err := s.auth.resolve(r, false)
		if err != nil {
			continue // NATS is away: not a refusal
		}
		if now == nil || !now.Admin && (before.Admin || site != "" && !now.canSee(site)) {
			if r.Context().Err() == nil {
				s.log.Info("stream ended: its session no longer grants it", "user", before.User, "path", r.URL.Path)
			}
			cancel()
			return
		}
	}
}

// api requires a session or an API token and answers 401 without one.
func (s *Server) api(next http.HandlerFunc) http.Handler {
	return s.authorized(next, true)
}

func (s *Server) authorized(next http.HandlerFunc, bearer bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		me := s.auth.principalOf(r, bearer)
		if me == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pulse"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "log in or send an API token"})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, me)))
	})
}

// errNoAccess answers a request for a site the user was not granted.
func errNoAccess(w http.ResponseWriter, site string) {
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "no access to site " + site})
}

func (s *Server) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, loginPage(localPath(r.URL.Query().Get("next")), ""))
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !s.auth.limiter.allow(s.cfg.ClientAddrs.Key(r), time.Now()) {
		s.metrics.logins.WithLabelValues("limited").Inc()
		s.render(w, r, http.StatusTooManyRequests, loginPage(localPath(r.URL.Query().Get("next")), "Too many login attempts from your address; wait a minute and try again."))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.render(w, r, http.StatusBadRequest, loginPage("/", "The form could not be read; try again."))
		return
	}
	next := localPath(r.PostForm.Get("next"))
	token, err := s.auth.login(r.Context(), r.PostForm.Get("username"), r.PostForm.Get("password"))
	switch {
	case errors.Is(err, errBadLogin):
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.render(w, r, http.StatusUnauthorized, loginPage(next, "Wrong username or password."))
		return
	case err != nil:
		s.log.Error("login", "err", err)
		s.render(w, r, http.StatusServiceUnavailable, loginPage(next, "Logging in is not possible right now; try again shortly."))
		return
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	http.SetCookie(w, sessionCookie(r, token, int(store.SessionTTL/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
		if err := s.auth.logout(r.Context(), c.Value); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("logout", "err", err)
		}
	}
	http.SetCookie(w, sessionCookie(r, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath returns p when it is a path on this server, else "/", so a
// login link cannot send the admin elsewhere. Browsers drop tabs and line
// breaks from a Location and read a backslash as a slash, so "/\t/evil"
// would be "//evil", another host: a path with any of them is refused.
func localPath(p string) string {
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/"
	}
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return p
}

func (s *Server) serveSites(w http.ResponseWriter, r *http.Request) {
	s.renderSites(w, r, http.StatusOK, store.Site{}, "")
}

func (s *Server) renderSites(w http.ResponseWriter, r *http.Request, status int, form store.Site, formErr string) {
	rows, err := s.siteRows(r.Context())
	if err != nil {
		s.log.Error("list sites", "err", err)
		http.Error(w, "could not list sites", http.StatusServiceUnavailable)
		return
	}
	me := meFrom(r.Context())
	rows = slices.DeleteFunc(rows, func(row siteRow) bool { return !me.canSee(row.Site.Key) })
	s.render(w, r, status, sitesPage(me, s.cfg.TrackerURL, rows, form, formErr))
}

// serveSaveSite adds or changes a site in the registry; every ingest node
// follows the registry, so the change takes effect within moments.
func (s *Server) serveSaveSite(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderSites(w, r, http.StatusBadRequest, store.Site{}, "The form could not be read; try again.")
		return
	}
	site := store.Site{
		Key:        strings.TrimSpace(r.PostForm.Get("key")),
		Name:       strings.TrimSpace(r.PostForm.Get("name")),
		Origins:    []string{},
		RespectDNT: r.PostForm.Get("respectDNT") != "",
	}
	for _, o := range strings.Fields(r.PostForm.Get("origins")) {
		site.Origins = append(site.Origins, strings.TrimSuffix(o, "/"))
	}
	if err := site.Validate(); err != nil {
		s.renderSites(w, r, http.StatusUnprocessableEntity, site, err.Error())
		return
	}
	if err := s.cfg.Sites.Put(r.Context(), site); err != nil {
		s.log.Error("save site", "site", site.Key, "err", err)
		s.renderSites(w, r, http.StatusServiceUnavailable, site, "The site could not be saved; try again shortly.")
		return
	}
	s.log.Info("site saved", "site", site.Key, "by", meFrom(r.Context()).User)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// siteRows lists the registered sites with their latest figures.
func (s *Server) siteRows(ctx context.Context) ([]siteRow, error) {
	sites, err := s.cfg.Sites.List(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]siteRow, len(sites))
	for i, site := range sites {
		rows[i].Site = site
		if rows[i].Overview, err = s.overview(ctx, site.Key); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// snippet is the tag a site puts on its pages.
func snippet(trackerURL string, site store.Site) string {
	if trackerURL == "" {
		trackerURL = "https://YOUR-INGEST-HOST"
	}
	tag := `<script defer src="` + strings.TrimSuffix(trackerURL, "/") + `/static/pulse.js" data-site="` + site.Key + `"`
	if site.RespectDNT {
		tag += " data-respect-dnt"
	}
	return tag + "></script>"
}

func (s *Server) serveOverview(w http.ResponseWriter, r *http.Request) {
	site := r.PathValue("site")
	if !event.ValidSite(site) {
		http.NotFound(w, r)
		return
	}
	if !meFrom(r.Context()).canSee(site) {
		http.Error(w, "You have no access to this site; an admin can grant it on the Users page.", http.StatusForbidden)
		return
	}
	ov, err := s.overview(r.Context(), site)
	if err != nil {
		s.log.Error("overview", "site", site, "err", err)
		http.Error(w, "could not load the site's figures", http.StatusServiceUnavailable)
		return
	}
	s.render(w, r, http.StatusOK, overviewPage(meFrom(r.Context()), ov, s.told.current(time.Now()), s.quotesNow(r.Context())))
}

// serveStats answers GET /api/v1/stats?site=SITE with the site's overview.
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	site := r.URL.Query().Get("site")
	if !event.ValidSite(site) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "site must be a site key: a-z, 0-9, '-' and '_'"})
		return
	}
	if !meFrom(r.Context()).canSee(site) {
		errNoAccess(w, site)
		return
	}
	ov, err := s.overview(r.Context(), site)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ov)
}

// overview returns a site's latest overview, or an empty one for a site
// with no events yet.
func (s *Server) overview(ctx context.Context, site string) (event.Overview, error) {
	ov := event.Overview{Site: site, ByKind: map[string]uint64{}}
	data, err := s.cfg.Views.Panel(ctx, site, event.PanelOverview)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ov, nil
	case err != nil:
		return ov, fmt.Errorf("load overview of %s: %w", site, err)
	}
	err = event.Decode("overview", data, &ov)
	return ov, err
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := c.Render(r.Context(), w); err != nil {
		s.log.Warn("render", "path", r.URL.Path, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
