package web

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
)

type adminUsersData struct {
	Users []store.User
	// Via names the identity sources of users with linked identities
	// (user id → "Instance B"), so that an "ext-…@external.invalid" user
	// says where it came from.
	Via map[string]string
}

func (h *Handler) adminUsers(w http.ResponseWriter, r *http.Request, c *caller) {
	users, err := h.opts.Users.List(r.Context())
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	ids, err := h.opts.Store.ListAllIdentities(r.Context())
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	byUser := map[string][]store.UserIdentity{}
	for _, id := range ids {
		byUser[id.UserID] = append(byUser[id.UserID], id)
	}
	via := make(map[string]string, len(byUser))
	for _, u := range users {
		if list := byUser[u.ID]; len(list) > 0 {
			via[u.ID] = h.sourceLabels(list) + lastSeenEmail(u, list)
		}
	}
	h.page(w, r, c, http.StatusOK, "users", "users", "Users", adminUsersData{Users: users, Via: via}, "")
}

// lastSeenEmail helps tell who a user with a placeholder address
// (…@external.invalid: the source vouched for no address) is: " · " and
// the address the source sent last, if any.
func lastSeenEmail(u store.User, ids []store.UserIdentity) string {
	if !strings.HasSuffix(u.Email, "@"+identity.PlaceholderEmailDomain) {
		return ""
	}
	var last store.UserIdentity
	for _, id := range ids {
		if id.Email != "" && !id.LastLoginAt.Before(last.LastLoginAt) {
			last = id
		}
	}
	switch {
	case last.Email == "":
		return ""
	case last.EmailVerified:
		return " · " + last.Email
	}
	return " · " + last.Email + ", not verified"
}

type userForm struct {
	Email, Name, Roles string
	FieldErrors        map[string]string
	MinRunes           int
}

func (h *Handler) adminUserNew(w http.ResponseWriter, r *http.Request, c *caller) {
	h.page(w, r, c, http.StatusOK, "user_new", "users", "New user",
		userForm{FieldErrors: map[string]string{}, MinRunes: identity.MinPasswordRunes}, "")
}

// splitRoles reads roles typed as "admin, support" or "admin support".
func splitRoles(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

type secretShownData struct {
	User     store.User
	Password string
	Created  bool // a new user (else a reset)
	Added    bool // a reset of an account that had no password
}

// adminUserCreate creates a user with the typed password, or a generated
// one that is shown once.
func (h *Handler) adminUserCreate(w http.ResponseWriter, r *http.Request, c *caller) {
	if !h.parseForm(w, r, c) {
		return
	}
	pf := r.PostForm
	f := userForm{
		Email: truncate(strings.TrimSpace(pf.Get("email")), 300), Name: truncate(pf.Get("name"), 220),
		Roles: truncate(pf.Get("roles"), 300), FieldErrors: map[string]string{}, MinRunes: identity.MinPasswordRunes,
	}
	password := pf.Get("password")
	generated := password == ""
	if generated {
		password = identity.GeneratePassword()
	}
	u, err := h.opts.Users.Create(r.Context(), identity.NewUser{
		Email: pf.Get("email"), Name: pf.Get("name"), Password: password, Roles: splitRoles(pf.Get("roles")),
	})
	if err != nil {
		if ve, ok := errors.AsType[*identity.ValidationError](err); ok {
			f.FieldErrors[ve.Field] = fieldMessage(map[string]string{"email": "The email address", "name": "The name", "roles": "Roles", "password": "The password"}[ve.Field], ve.Message)
			h.page(w, r, c, http.StatusUnprocessableEntity, "user_new", "users", "New user", f, "The user was not created. Correct the fields below.")
			return
		}
		if errors.Is(err, identity.ErrUserExists) {
			f.FieldErrors["email"] = "A user with this email address already exists."
			h.page(w, r, c, http.StatusUnprocessableEntity, "user_new", "users", "New user", f, "The user was not created. Correct the fields below.")
			return
		}
		h.unavailable(w, r, c, err)
		return
	}
	if !generated {
		http.Redirect(w, r, "/admin/users/"+u.ID+"?done=user_created", http.StatusSeeOther)
		return
	}
	h.page(w, r, c, http.StatusOK, "password_shown", "users", "User created", secretShownData{User: u, Password: password, Created: true}, "")
}

type adminUserData struct {
	U           store.User
	Self        bool
	ActiveKeys  int
	Sessions    int
	Roles       string
	FieldErrors map[string]string
	// Identities are the user's linked external identities, oldest first.
	Identities []identityRow
	// SignsInWith names their sources ("Instance B"); "" for none.
	SignsInWith string
	NoPassword  bool // the account has no password login
}

// loadUser reads the user named in the path.
func (h *Handler) loadUser(w http.ResponseWriter, r *http.Request, c *caller) (store.User, bool) {
	id := r.PathValue("id")
	if strings.Contains(id, "@") { // ids only; emails are not addresses of pages
		id = ""
	}
	u, err := h.opts.Store.GetUser(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound) || id == "":
		h.errorPage(w, r, c, http.StatusNotFound, "User not found", "There is no user with this id.")
		return store.User{}, false
	case err != nil:
		h.unavailable(w, r, c, err)
		return store.User{}, false
	}
	return u, true
}

func (h *Handler) adminUserData(r *http.Request, c *caller, u store.User) (adminUserData, error) {
	d := adminUserData{U: u, Self: u.ID == c.user.ID, Roles: strings.Join(u.Roles, " "), FieldErrors: map[string]string{},
		NoPassword: u.PasswordHash == ""}
	keys, err := h.opts.Keys.List(r.Context(), u.ID)
	if err != nil {
		return d, err
	}
	now := h.now()
	for _, k := range keys {
		if k.Active(now) {
			d.ActiveKeys++
		}
	}
	sessions, err := h.opts.Sessions.List(r.Context(), u.ID)
	if err != nil {
		return d, err
	}
	d.Sessions = len(sessions)
	ids, err := h.opts.Store.ListIdentities(r.Context(), u.ID)
	if err != nil {
		return d, err
	}
	d.Identities, d.SignsInWith = h.identityRows(ids), h.sourceLabels(ids)
	return d, nil
}

func (h *Handler) adminUser(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok {
		return
	}
	d, err := h.adminUserData(r, c, u)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, http.StatusOK, "user", "users", u.Email, d, "")
}

func (h *Handler) adminUserRoles(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok || !h.parseForm(w, r, c) {
		return
	}
	typed := r.PostForm.Get("roles")
	roles := splitRoles(typed)
	invalid := func(msg string) {
		d, err := h.adminUserData(r, c, u)
		if err != nil {
			h.unavailable(w, r, c, err)
			return
		}
		d.Roles = truncate(typed, 300)
		d.FieldErrors["roles"] = msg
		h.page(w, r, c, http.StatusUnprocessableEntity, "user", "users", u.Email, d, "The roles were not saved.")
	}
	if u.ID == c.user.ID && !slices.Contains(roles, RoleAdmin) {
		invalid("You cannot remove the admin role from your own account: ask another administrator.")
		return
	}
	before := u.Roles
	nu, err := h.opts.Users.SetRoles(r.Context(), u.ID, roles)
	if err != nil {
		if ve, ok := errors.AsType[*identity.ValidationError](err); ok {
			invalid(fieldMessage("Roles", ve.Message))
			return
		}
		if errors.Is(err, store.ErrNotFound) {
			h.errorPage(w, r, c, http.StatusNotFound, "User not found", "There is no user with this id.")
			return
		}
		h.unavailable(w, r, c, err)
		return
	}
	done := "roles_saved"
	if slices.Equal(before, nu.Roles) {
		done = "roles_unchanged"
	}
	http.Redirect(w, r, "/admin/users/"+u.ID+"?done="+done, http.StatusSeeOther)
}

func (h *Handler) adminUserDisableConfirm(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok {
		return
	}
	if u.ID == c.user.ID {
		h.errorPage(w, r, c, http.StatusBadRequest, "Not possible", "You cannot disable your own account.")
		return
	}
	if u.Disabled {
		http.Redirect(w, r, "/admin/users/"+u.ID+"?done=user_already_disabled", http.StatusSeeOther)
		return
	}
	h.page(w, r, c, http.StatusOK, "confirm", "users", "Disable user", confirmData{
		Heading: "Disable " + u.Email + "?",
		Message: "The user is signed out everywhere and every API key and credential of theirs stops working at once. You can enable the account again later; their keys then work again unless they expired.",
		Facts:   []detail{{"Email", u.Email}, {"Name", u.DisplayName}, {"Roles", orNone(u.Roles)}},
		Action:  "/admin/users/" + u.ID + "/disable", Button: "Disable user", Cancel: "/admin/users/" + u.ID, Danger: true,
	}, "")
}

func (h *Handler) adminUserDisable(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok {
		return
	}
	if u.ID == c.user.ID {
		h.errorPage(w, r, c, http.StatusBadRequest, "Not possible", "You cannot disable your own account.")
		return
	}
	if _, err := h.opts.Users.SetDisabled(r.Context(), u.ID, true); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	// Disabling ends the user's sessions (the server wires identity's
	// credential hook to the session manager); done here too, a no-op
	// when already done.
	if err := h.opts.Sessions.RevokeAll(r.Context(), u.ID, "user_disabled"); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/admin/users/"+u.ID+"?done=user_disabled", http.StatusSeeOther)
}

func (h *Handler) adminUserEnable(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok {
		return
	}
	if _, err := h.opts.Users.SetDisabled(r.Context(), u.ID, false); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/admin/users/"+u.ID+"?done=user_enabled", http.StatusSeeOther)
}

func (h *Handler) adminUserResetConfirm(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok {
		return
	}
	if u.ID == c.user.ID {
		http.Redirect(w, r, "/account/password?done=password_reset_no_self", http.StatusSeeOther)
		return
	}
	if u.PasswordHash == "" {
		h.adminUserAddPasswordConfirm(w, r, c, u)
		return
	}
	h.page(w, r, c, http.StatusOK, "confirm", "users", "Reset password", confirmData{
		Heading: "Reset the password of " + u.Email + "?",
		Message: "mcpgate generates a new password and shows it to you once. The old password stops working and the user is signed out everywhere. Their API keys keep working.",
		Facts:   []detail{{"Email", u.Email}, {"Name", u.DisplayName}},
		Action:  "/admin/users/" + u.ID + "/reset-password", Button: "Reset password", Cancel: "/admin/users/" + u.ID, Danger: true,
	}, "")
}

// adminUserAddPasswordConfirm is the reset confirmation for an account
// without a password (made for an external identity): the "reset" gives
// it a password login it did not have, and the page says so.
func (h *Handler) adminUserAddPasswordConfirm(w http.ResponseWriter, r *http.Request, c *caller, u store.User) {
	ids, err := h.opts.Store.ListIdentities(r.Context(), u.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	via := h.sourceLabels(ids)
	msg := "This account has no password. Adding one lets whoever holds it sign in as this user with the email address below and that password"
	if via != "" {
		msg = "This account has no password: it signs in through " + via + ". Adding one lets whoever holds it sign in as this user with the email address below and that password, besides " + via
	}
	msg += ". mcpgate generates the password and shows it to you once. The user is signed out everywhere; their API keys keep working."
	facts := []detail{{"Email", u.Email}, {"Name", u.DisplayName}}
	if via != "" {
		facts = append(facts, detail{"Signs in through", via})
	}
	h.page(w, r, c, http.StatusOK, "confirm", "users", "Add a password", confirmData{
		Heading: "Add a password login to " + u.Email + "?", Message: msg, Facts: facts,
		Action: "/admin/users/" + u.ID + "/reset-password", Button: "Add a password", Cancel: "/admin/users/" + u.ID, Danger: true,
	}, "")
}

func (h *Handler) adminUserReset(w http.ResponseWriter, r *http.Request, c *caller) {
	u, ok := h.loadUser(w, r, c)
	if !ok {
		return
	}
	if u.ID == c.user.ID {
		http.Redirect(w, r, "/account/password?done=password_reset_no_self", http.StatusSeeOther)
		return
	}
	added := u.PasswordHash == ""
	password := identity.GeneratePassword()
	nu, err := h.opts.Users.SetPassword(r.Context(), u.ID, password)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	if err := h.opts.Sessions.RevokeAll(r.Context(), u.ID, "password_reset"); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	title := "Password reset"
	if added {
		title = "Password added"
	}
	h.page(w, r, c, http.StatusOK, "password_shown", "users", title, secretShownData{User: nu, Password: password, Added: added}, "")
}
