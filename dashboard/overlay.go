package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/nats-io/nats.go"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

// The heatmap overlay: an admin opens one of a site's pages from the
// dashboard with a signed, short-lived link in its fragment
// (#pulse-heatmap=TOKEN&pulse-dashboard=URL), and pulse.js, instead of
// tracking, loads overlay.js, which draws the page's heatmaps over the
// live page and keeps them live from this dashboard's /overlay/heat
// stream. The token authorises reading that one site's heat panel until
// it expires, nothing else; it is signed with a key every dashboard
// replica shares (in the users bucket), so any of them accepts it.
const (
	// overlayTTL is how long an overlay link works.
	overlayTTL = time.Hour
	// overlayKeyName names the signing key among the users bucket's
	// secrets.
	overlayKeyName = "overlay"
)

// overlayToken is a signed grant to read one site's heat panel until Exp.
type overlayToken struct {
	Site string
	Exp  time.Time
}

// signOverlay returns the token for t, signed with key:
// base64url("site.expiry-unix") "." base64url(HMAC-SHA256).
func signOverlay(key []byte, t overlayToken) string {
	payload := t.Site + "." + strconv.FormatInt(t.Exp.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(mac.Sum(nil))
}

// Errors of verifyOverlay.
var (
	errOverlayToken   = errors.New("not an overlay token of this dashboard")
	errOverlayExpired = errors.New("the overlay link has expired; open it again from the dashboard")
)

// verifyOverlay checks token's signature with key and its expiry at now.
func verifyOverlay(key []byte, token string, now time.Time) (overlayToken, error) {
	enc := base64.RawURLEncoding
	p64, s64, ok := strings.Cut(token, ".")
	if !ok || len(token) > 512 {
		return overlayToken{}, errOverlayToken
	}
	payload, err1 := enc.DecodeString(p64)
	sig, err2 := enc.DecodeString(s64)
	if err1 != nil || err2 != nil {
		return overlayToken{}, errOverlayToken
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return overlayToken{}, errOverlayToken
	}
	site, exp, ok := strings.Cut(string(payload), ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || !event.ValidSite(site) {
		return overlayToken{}, errOverlayToken
	}
	t := overlayToken{Site: site, Exp: time.Unix(unix, 0)}
	if !now.Before(t.Exp) {
		return t, errOverlayExpired
	}
	return t, nil
}

// overlayKey returns the shared signing key, creating it at the first
// start of the first dashboard; a replica that loses the race reads the
// winner's.
func overlayKey(ctx context.Context, users *store.Accounts) ([]byte, error) {
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	key, err := users.Secret(ctx, overlayKeyName, fresh)
	if err != nil {
		return nil, fmt.Errorf("overlay key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("overlay key: %d bytes stored, want 32", len(key))
	}
	return key, nil
}

// overlayPath is the dashboard's link that opens a page of site with the
// overlay.
func overlayPath(site, path string) templ.SafeURL {
	return templ.SafeURL("/sites/" + site + "/overlay?" + url.Values{"path": {path}}.Encode())
}

// pageOrigin is where a site's pages are: its first allowed origin, or,
// for a site that names none, the tracker's own (the demo page is served
// by the ingest node).
func (s *Server) pageOrigin(site store.Site) string {
	if len(site.Origins) > 0 {
		return site.Origins[0]
	}
	if u, err := url.Parse(s.cfg.TrackerURL); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return ""
}

// dashboardURL is this dashboard as the browser reached it.
func dashboardURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// serveOverlayLink sends the admin to one of a site's pages with the
// overlay: GET /sites/{site}/overlay?path=/pricing.
func (s *Server) serveOverlayLink(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("site")
	if !event.ValidSite(key) {
		http.NotFound(w, r)
		return
	}
	if !meFrom(r.Context()).canSee(key) {
		http.Error(w, "You have no access to this site; an admin can grant it on the Users page.", http.StatusForbidden)
		return
	}
	path := r.URL.Query().Get("path")
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.ContainsAny(path, "#\\\r\n") {
		http.Error(w, "path must be a page's path, starting with /", http.StatusBadRequest)
		return
	}
	site, ok := s.registry.Site(key)
	origin := s.pageOrigin(site)
	if !ok || origin == "" {
		http.Error(w, "The site names no origin to open its pages at; add one on the Sites page.", http.StatusConflict)
		return
	}
	token := signOverlay(s.overlayKey, overlayToken{Site: key, Exp: time.Now().Add(overlayTTL)})
	frag := url.Values{"pulse-heatmap": {token}, "pulse-dashboard": {dashboardURL(r)}}.Encode()
	http.Redirect(w, r, origin+path+"#"+frag, http.StatusSeeOther)
}

// overlayAllows reports whether a page at origin may read site's overlay
// stream: the site's own origins, and the tracker's for a site that names
// none. No Origin header is not a cross-origin browser request.
func (s *Server) overlayAllows(site store.Site, origin string) bool {
	return origin == "" || site.AllowsOrigin(origin) || origin == s.pageOrigin(site)
}

// heatKey is the hub key of a site's heat panel.
func heatKey(site string) string { return "heat:" + site }

// serveOverlayHeat streams a site's heat panel to the overlay:
// GET /overlay/heat?token=T. The token is the authority; the answer is
// readable by the site's own pages (CORS).
func (s *Server) serveOverlayHeat(w http.ResponseWriter, r *http.Request) {
	t, err := verifyOverlay(s.overlayKey, r.URL.Query().Get("token"), time.Now())
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	site, _ := s.registry.Site(t.Site)
	origin := r.Header.Get("Origin")
	if !s.overlayAllows(site, origin) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "origin " + origin + " is not one of site " + t.Site + "'s"})
		return
	}
	if origin != "" {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Vary", "Origin")
	}
	if !s.takeStream(w, s.overlayStreams, t.Site, "overlays: ") {
		return
	}
	defer s.overlayStreams.release(t.Site)
	// The stream ends when the token does.
	ctx, cancel := context.WithDeadline(r.Context(), t.Exp)
	defer cancel()
	s.sse(w, r.WithContext(ctx), heatKey(t.Site), func(ctx context.Context) (*update, error) {
		data, err := s.cfg.Views.Panel(ctx, t.Site, event.PanelHeat)
		if errors.Is(err, store.ErrNotFound) {
			// No heat yet: an empty panel, under the aggregator's
			// versions (Unix ms) and above none sent, so it is sent.
			return encodeHeat(event.HeatPanel{Site: t.Site, Version: 1, Updated: time.Now().UnixMilli()})
		}
		if err != nil {
			return nil, fmt.Errorf("load heat panel: %w", err)
		}
		var hp event.HeatPanel
		if err := event.Decode("heat panel", data, &hp); err != nil {
			return nil, err
		}
		return encodeHeat(hp)
	})
}

// encodeHeat makes an SSE frame of a heat panel: overlay.js reads the
// panel as it is.
func encodeHeat(hp event.HeatPanel) (*update, error) {
	data, err := json.Marshal(hp)
	if err != nil {
		return nil, fmt.Errorf("encode heat panel: %w", err)
	}
	frame := make([]byte, 0, len(data)+64)
	frame = fmt.Appendf(frame, "id: %d\nevent: heat\ndata: ", hp.Version)
	frame = append(append(frame, data...), "\n\n"...)
	return &update{version: hp.Version, frame: frame}, nil
}

// onHeat hands a heat panel to the overlays watching its site (onPanel
// drops those no overlay watches).
func (s *Server) onHeat(msg *nats.Msg) {
	var hp event.HeatPanel
	if err := event.Decode("heat panel", msg.Data, &hp); err != nil || !event.ValidSite(hp.Site) {
		s.log.Warn("bad heat panel", "subject", msg.Subject, "err", err)
		return
	}
	u, err := encodeHeat(hp)
	if err != nil {
		s.log.Error("heat panel", "site", hp.Site, "err", err)
		return
	}
	s.hub.publish(heatKey(hp.Site), u)
}
