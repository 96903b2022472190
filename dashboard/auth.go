package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
)

const (
	adminUser  = "admin"
	cookieName = "pulse_session"
	// maxFormBytes bounds a login form; it holds two short fields.
	maxFormBytes = 4 << 10
	// maxPasswordLen is bcrypt's limit.
	maxPasswordLen = 72
)

// account is a dashboard user as stored in the users bucket.
type account struct {
	User    string    `json:"user"`
	Hash    []byte    `json:"hash"`
	Created time.Time `json:"created"`
}

// session is a login as stored in the sessions bucket, under the SHA-256
// of the cookie's token, so a copy of the bucket holds no usable cookie.
type session struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
}

// auth keeps accounts and sessions in NATS KV, so every dashboard replica
// sees the same logins.
type auth struct {
	users    jetstream.KeyValue
	sessions jetstream.KeyValue
	apiToken string
}

// ensureAdmin makes sure the admin account exists. With a password given,
// the account gets it; without one, a first start creates the account with
// a random password and returns it, to be printed once. Later starts (and
// other replicas) find the account and return "".
func (a *auth) ensureAdmin(ctx context.Context, password string) (generated string, err error) {
	if password != "" {
		if len(password) > maxPasswordLen {
			return "", fmt.Errorf("admin password longer than %d bytes", maxPasswordLen)
		}
		if acc, err := a.account(ctx, adminUser); err == nil && bcrypt.CompareHashAndPassword(acc.Hash, []byte(password)) == nil {
			return "", nil
		}
		acc, err := newAccount(adminUser, password)
		if err != nil {
			return "", err
		}
		if _, err := a.users.Put(ctx, adminUser, acc); err != nil {
			return "", fmt.Errorf("store admin account: %w", err)
		}
		return "", nil
	}
	generated = randomToken(12)
	acc, err := newAccount(adminUser, generated)
	if err != nil {
		return "", err
	}
	if _, err := a.users.Create(ctx, adminUser, acc); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", nil
		}
		return "", fmt.Errorf("create admin account: %w", err)
	}
	return generated, nil
}

func newAccount(user, password string) ([]byte, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return json.Marshal(account{User: user, Hash: hash, Created: time.Now().UTC()})
}

func (a *auth) account(ctx context.Context, user string) (account, error) {
	var acc account
	e, err := a.users.Get(ctx, user)
	if err != nil {
		return acc, err
	}
	err = json.Unmarshal(e.Value(), &acc)
	return acc, err
}

// errBadLogin is the one answer to a wrong user or a wrong password, so
// that the answer does not tell which.
var errBadLogin = errors.New("wrong username or password")

// login checks a user's password and returns a new session token.
func (a *auth) login(ctx context.Context, user, password string) (string, error) {
	if !validUser(user) || len(password) > maxPasswordLen {
		return "", errBadLogin
	}
	acc, err := a.account(ctx, user)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Spend the time a hash comparison takes, so timing does not tell
		// which users exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return "", errBadLogin
	}
	if err != nil {
		return "", fmt.Errorf("load account: %w", err)
	}
	if bcrypt.CompareHashAndPassword(acc.Hash, []byte(password)) != nil {
		return "", errBadLogin
	}
	token := randomToken(32)
	s, _ := json.Marshal(session{User: user, Created: time.Now().UTC()})
	if _, err := a.sessions.Put(ctx, sessionKey(token), s); err != nil {
		return "", fmt.Errorf("store session: %w", err)
	}
	return token, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("pulse"), bcrypt.DefaultCost)

func validUser(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (a *auth) logout(ctx context.Context, token string) error {
	return a.sessions.Delete(ctx, sessionKey(token))
}

// userOf returns the user a request is logged in as: by session cookie, or
// by API token when allowBearer is set. It returns "" for none.
func (a *auth) userOf(r *http.Request, allowBearer bool) string {
	if allowBearer && a.apiToken != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok &&
			subtle.ConstantTimeCompare([]byte(tok), []byte(a.apiToken)) == 1 {
			return "api"
		}
	}
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || len(c.Value) > 64 {
		return ""
	}
	e, err := a.sessions.Get(r.Context(), sessionKey(c.Value))
	if err != nil {
		return ""
	}
	var s session
	if json.Unmarshal(e.Value(), &s) != nil {
		return ""
	}
	return s.User
}

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionCookie carries token for maxAge seconds; a negative maxAge
// deletes the cookie.
func sessionCookie(r *http.Request, token string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     cookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		// Secure behind TLS, directly or through a proxy that says so.
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	}
}
