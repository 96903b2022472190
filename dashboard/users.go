package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	s.renderUsers(w, r, http.StatusOK, usersView{})
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, status int, v usersView) {
	ctx := r.Context()
	var errs []error
	var err error
	v.Accounts, err = s.auth.users.List(ctx)
	errs = append(errs, err)
	v.Tokens, err = s.auth.users.Tokens(ctx, "")
	errs = append(errs, err)
	rows, err := s.siteRows(ctx)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		s.log.Error("users page", "err", err)
		http.Error(w, "could not load users", http.StatusServiceUnavailable)
		return
	}
	for _, row := range rows {
		v.Sites = append(v.Sites, row.Site.Key)
	}
	s.render(w, r, status, usersPage(meFrom(ctx), v))
}

// serveSaveUser adds a user or changes one: POST /users with user,
// password (empty keeps it), admin, and sites (repeated).
func (s *Server) serveSaveUser(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderUsers(w, r, http.StatusBadRequest, usersView{Error: "The form could not be read; try again."})
		return
	}
	f := r.PostForm
	acc := store.Account{User: strings.TrimSpace(f.Get("user")), Admin: f.Get("admin") != ""}
	password := f.Get("password")
	for _, site := range f["sites"] {
		if event.ValidSite(site) {
			acc.Sites = append(acc.Sites, site)
		}
	}
	var problem string
	switch {
	case !validUser(acc.User):
		problem = "A username is 1 to 64 of a-z, 0-9, '-' and '_' (and does not start with \"token\")."
	case password != "" && (len(password) < minPasswordLen || len(password) > maxPasswordLen):
		problem = fmt.Sprintf("A password has %d to %d characters.", minPasswordLen, maxPasswordLen)
	case acc.User == meFrom(r.Context()).User && !acc.Admin:
		problem = "You cannot take your own admin rights; another admin can."
	}
	if problem != "" {
		s.renderUsers(w, r, http.StatusUnprocessableEntity, usersView{Error: problem})
		return
	}
	if err := s.auth.putAccount(r.Context(), acc, password); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.renderUsers(w, r, http.StatusUnprocessableEntity, usersView{Error: "A new user needs a password."})
			return
		}
		s.log.Error("save user", "err", err)
		s.renderUsers(w, r, http.StatusServiceUnavailable, usersView{Error: "The user could not be saved; try again shortly."})
		return
	}
	s.log.Info("user saved", "user", acc.User, "admin", acc.Admin, "by", meFrom(r.Context()).User)
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (s *Server) serveDeleteUser(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	if !validUser(user) || user == meFrom(r.Context()).User {
		s.renderUsers(w, r, http.StatusUnprocessableEntity, usersView{Error: "You cannot delete yourself."})
		return
	}
	// Sessions and tokens of a deleted user stop working: every request
	// loads the account, and one made again under the name is another
	// (store.Account.ID).
	if err := s.auth.users.Delete(r.Context(), user); err != nil {
		s.log.Error("delete user", "err", err)
	}
	s.log.Info("user deleted", "user", user, "by", meFrom(r.Context()).User)
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (s *Server) serveCreateToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderUsers(w, r, http.StatusBadRequest, usersView{Error: "The form could not be read; try again."})
		return
	}
	name, user := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("user")
	if name == "" || len(name) > 60 {
		s.renderUsers(w, r, http.StatusUnprocessableEntity, usersView{Error: "A token needs a name of up to 60 characters."})
		return
	}
	acc, err := s.auth.users.Account(r.Context(), user)
	if err != nil {
		s.renderUsers(w, r, http.StatusUnprocessableEntity, usersView{Error: "A token acts for an existing user."})
		return
	}
	token, err := s.auth.createToken(r.Context(), name, acc)
	if err != nil {
		s.log.Error("create token", "err", err)
		s.renderUsers(w, r, http.StatusServiceUnavailable, usersView{Error: "The token could not be created; try again shortly."})
		return
	}
	s.log.Info("API token created", "name", name, "for", user, "by", meFrom(r.Context()).User)
	s.renderUsers(w, r, http.StatusOK, usersView{NewToken: token})
}

func (s *Server) serveRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		http.NotFound(w, r)
		return
	}
	if err := s.auth.users.DeleteToken(r.Context(), id); err != nil {
		s.log.Error("revoke token", "err", err)
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}
