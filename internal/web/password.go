package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/identity"
)

type passwordData struct {
	Email       string // for password managers (autocomplete="username")
	MinRunes    int
	FieldErrors map[string]string
	// NoPassword: the account has no password to change (it was made for
	// an external identity); SignsInWith names its sources ("" when it has
	// none).
	NoPassword  bool
	SignsInWith string
}

func (h *Handler) passwordForm(w http.ResponseWriter, r *http.Request, c *caller) {
	if c.user.PasswordHash == "" {
		h.noPassword(w, r, c, http.StatusOK)
		return
	}
	h.page(w, r, c, http.StatusOK, "password", "password", "Change password",
		passwordData{Email: c.user.Email, MinRunes: identity.MinPasswordRunes, FieldErrors: map[string]string{}}, "")
}

// noPassword answers the password page of an account without a password:
// there is no current password to type, so no form, but where the user
// signs in instead.
func (h *Handler) noPassword(w http.ResponseWriter, r *http.Request, c *caller, status int) {
	ids, err := h.opts.Store.ListIdentities(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, status, "password", "password", "Password",
		passwordData{NoPassword: true, SignsInWith: h.sourceLabels(ids)}, "")
}

// passwordChange checks the current password (through identity.Login, so
// guesses are rate-limited and audited like any login), sets the new one,
// which ends every session of the user, and starts a fresh session for
// this browser.
func (h *Handler) passwordChange(w http.ResponseWriter, r *http.Request, c *caller) {
	if !h.parseForm(w, r, c) {
		return
	}
	if c.user.PasswordHash == "" {
		h.noPassword(w, r, c, http.StatusConflict)
		return
	}
	f := r.PostForm
	current, next, confirm := f.Get("current_password"), f.Get("new_password"), f.Get("confirm_password")
	d := passwordData{Email: c.user.Email, MinRunes: identity.MinPasswordRunes, FieldErrors: map[string]string{}}
	invalid := func(status int, msg string) {
		h.page(w, r, c, status, "password", "password", "Change password", d, msg)
	}
	switch {
	case current == "":
		d.FieldErrors["current_password"] = "Enter your current password."
	}
	if err := identity.CheckPasswordPolicy(next); next == "" {
		d.FieldErrors["new_password"] = "Choose a new password."
	} else if err != nil {
		d.FieldErrors["new_password"] = sentence(err.Error())
	} else if next != confirm {
		d.FieldErrors["confirm_password"] = "The two new passwords do not match."
	}
	if len(d.FieldErrors) > 0 {
		invalid(http.StatusUnprocessableEntity, "Your password was not changed. Correct the fields below.")
		return
	}
	if _, err := h.opts.Users.Login(r.Context(), c.user.Email, current, clientIP(r)); err != nil {
		if rl, ok := errors.AsType[*identity.RateLimitedError](err); ok {
			secs := identity.RetryAfterSeconds(rl.RetryAfter)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			invalid(http.StatusTooManyRequests, "Too many attempts. Try again in "+strconv.Itoa(secs)+" s.")
			return
		}
		if errors.Is(err, identity.ErrInvalidCredentials) {
			d.FieldErrors["current_password"] = "This is not your current password."
			invalid(http.StatusUnprocessableEntity, "Your password was not changed. Correct the fields below.")
			return
		}
		h.unavailable(w, r, c, err)
		return
	}
	u, err := h.opts.Users.SetPassword(r.Context(), c.user.ID, next)
	if err != nil {
		if ve, ok := errors.AsType[*identity.ValidationError](err); ok {
			d.FieldErrors["new_password"] = sentence(ve.Message)
			invalid(http.StatusUnprocessableEntity, "Your password was not changed. Correct the fields below.")
			return
		}
		h.unavailable(w, r, c, err)
		return
	}
	// The password change ends every session (the server wires identity's
	// credential hook to the session manager); doing it here as well makes
	// sure, and is a no-op when already done.
	if err := h.opts.Sessions.RevokeAll(r.Context(), u.ID, "password_changed"); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	if _, err := h.opts.Sessions.Start(r.Context(), w, r, u); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/account/password?done=password_changed", http.StatusSeeOther)
}
