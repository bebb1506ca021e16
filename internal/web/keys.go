package web

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/store"
)

// expiryChoices are the lifetimes a new key can have.
var expiryChoices = []struct {
	Value, Label string
	D            time.Duration // 0: never
}{
	{"7d", "7 days", 7 * 24 * time.Hour},
	{"30d", "30 days", 30 * 24 * time.Hour},
	{"90d", "90 days", 90 * 24 * time.Hour},
	{"1y", "1 year", 365 * 24 * time.Hour},
	{"never", "Never", 0},
}

const defaultExpiry = "30d"

// keyRow is one key as the list shows it.
type keyRow struct {
	store.APIKey
	Status      string // "active", "revoked", "expired"
	ThisSession bool   // the MCP credential of the browser session viewing the page
}

type keyListData struct {
	Active, Inactive []keyRow
}

func (h *Handler) keyList(w http.ResponseWriter, r *http.Request, c *caller) {
	keys, err := h.opts.Keys.List(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	var d keyListData
	now := h.now()
	for _, k := range keys {
		row := keyRow{APIKey: k, Status: "active", ThisSession: k.SessionID != "" && k.SessionID == c.cur.Session.ID}
		switch {
		case !k.RevokedAt.IsZero():
			row.Status = "revoked"
		case !k.Active(now):
			row.Status = "expired"
		}
		if row.Status == "active" {
			d.Active = append(d.Active, row)
		} else {
			d.Inactive = append(d.Inactive, row)
		}
	}
	h.page(w, r, c, http.StatusOK, "keys", "keys", "API keys", d, "")
}

// keyForm is the "new key" form, with what was typed when it comes back
// with an error.
type keyForm struct {
	Token     string
	Name      string
	Scopes    []string // chosen
	Grantable []scopeChoice
	Expiry    string
	Expiries  []struct {
		Value, Label string
		D            time.Duration
	}
	FieldErrors map[string]string
	// SignIn: the roles and claims of the session's sign-in, which the key
	// will not carry; nil when there are none.
	SignIn *signIn
}

type scopeChoice struct {
	Name, Description string
	Checked           bool
}

func (h *Handler) newKeyForm() keyForm {
	return keyForm{Token: newFormToken(), Expiry: defaultExpiry, Expiries: expiryChoices, FieldErrors: map[string]string{}}
}

func (h *Handler) fillScopes(f *keyForm) {
	f.Grantable = f.Grantable[:0]
	for _, s := range h.opts.GrantableScopes {
		f.Grantable = append(f.Grantable, scopeChoice{Name: s, Description: scopeDescription(s), Checked: slices.Contains(f.Scopes, s)})
	}
}

func scopeDescription(s string) string {
	switch {
	case s == ScopeAccount:
		return "Manage your API keys and sessions through the JSON API. Give it only to tools you trust with your account."
	case strings.HasSuffix(s, ":read"):
		return "Read access to " + strings.TrimSuffix(s, ":read") + " tools."
	case strings.HasSuffix(s, ":write"):
		return "Tools that change " + strings.TrimSuffix(s, ":write") + " data."
	}
	return ""
}

func (h *Handler) keyNew(w http.ResponseWriter, r *http.Request, c *caller) {
	f := h.newKeyForm()
	h.fillScopes(&f)
	var err error
	if f.SignIn, err = h.signInOf(r.Context(), c); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, http.StatusOK, "key_new", "keys", "New API key", f, "")
}

type keyCreatedData struct {
	Key       store.APIKey
	Plaintext string
	MCPURL    string
}

// keyCreate issues a key and shows it, once, in the response to the POST.
// The plaintext is stored nowhere: a reload re-submits the form, which the
// one-time form token turns into a "key already created" notice.
func (h *Handler) keyCreate(w http.ResponseWriter, r *http.Request, c *caller) {
	if !h.parseForm(w, r, c) {
		return
	}
	pf := r.PostForm
	f := h.newKeyForm()
	f.Token = pf.Get("form_token")
	f.Name = truncate(strings.TrimSpace(pf.Get("name")), apikeys.MaxNameLen+20)
	f.Expiry = pf.Get("expires")
	for _, s := range pf["scopes"] {
		if slices.Contains(h.opts.GrantableScopes, s) && !slices.Contains(f.Scopes, s) {
			f.Scopes = append(f.Scopes, s)
		} else if !slices.Contains(h.opts.GrantableScopes, s) {
			f.FieldErrors["scopes"] = "Choose scopes from the list."
		}
	}
	h.fillScopes(&f)
	var err error
	if f.SignIn, err = h.signInOf(r.Context(), c); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	invalid := func(msg string) {
		h.page(w, r, c, http.StatusUnprocessableEntity, "key_new", "keys", "New API key", f, msg)
	}
	if !validFormToken(f.Token) {
		f.Token = newFormToken()
		invalid("This form has expired. Check the details and create the key again.")
		return
	}
	var expiry time.Duration
	found := false
	for _, e := range expiryChoices {
		if e.Value == f.Expiry {
			expiry, found = e.D, true
		}
	}
	if !found {
		f.FieldErrors["expires"] = "Choose when the key expires."
		f.Expiry = defaultExpiry
	}
	if strings.TrimSpace(pf.Get("name")) == "" {
		f.FieldErrors["name"] = "Give the key a name, for example the tool or machine that will use it."
	}
	if len(f.Scopes) == 0 && f.FieldErrors["scopes"] == "" {
		f.FieldErrors["scopes"] = "Choose at least one scope."
	}
	if len(f.FieldErrors) > 0 {
		invalid("The key was not created. Correct the fields below.")
		return
	}

	once := c.cur.Session.ID + "/" + f.Token
	if !h.forms.reserve(once, h.now()) {
		http.Redirect(w, r, "/account/keys?done=key_already_created", http.StatusSeeOther)
		return
	}
	req := apikeys.IssueRequest{UserID: c.user.ID, Name: pf.Get("name"), Scopes: f.Scopes, Kind: store.KeyKindManual}
	if expiry > 0 {
		req.ExpiresAt = h.now().Add(expiry)
	}
	plaintext, key, err := h.opts.Keys.Issue(r.Context(), req)
	if err != nil {
		h.forms.release(once)
		if ve, ok := errors.AsType[*apikeys.ValidationError](err); ok {
			field := ve.Field
			if field == "expires_at" {
				field = "expires"
			}
			label, known := map[string]string{"name": "The name", "scopes": "Scopes", "expires": "The expiry"}[field]
			if !known {
				invalid("The key was not created: " + fieldMessage("", ve.Message))
				return
			}
			f.FieldErrors[field] = fieldMessage(label, ve.Message)
			invalid("The key was not created. Correct the fields below.")
			return
		}
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, http.StatusOK, "key_created", "keys", "API key created",
		keyCreatedData{Key: key, Plaintext: plaintext, MCPURL: h.opts.MCPURL}, "")
}

// ownKey loads one of the caller's keys; another user's key is "not
// found", so ids cannot be probed.
func (h *Handler) ownKey(w http.ResponseWriter, r *http.Request, c *caller) (store.APIKey, bool) {
	k, err := h.opts.Keys.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && k.UserID != c.user.ID:
		h.errorPage(w, r, c, http.StatusNotFound, "Key not found",
			"There is no API key with this id in your account. It may have been deleted after it expired.")
		return store.APIKey{}, false
	case err != nil:
		h.unavailable(w, r, c, err)
		return store.APIKey{}, false
	}
	return k, true
}

// confirmData drives the generic confirmation page.
type confirmData struct {
	Heading string
	Message string
	Facts   []detail // what is about to be affected
	Action  string   // POST target
	Button  string
	Cancel  string
	Danger  bool
}

func (h *Handler) keyRevokeConfirm(w http.ResponseWriter, r *http.Request, c *caller) {
	k, ok := h.ownKey(w, r, c)
	if !ok {
		return
	}
	if !k.RevokedAt.IsZero() {
		http.Redirect(w, r, "/account/keys?done=key_already_revoked", http.StatusSeeOther)
		return
	}
	msg := "Anything using this key is refused from the moment you revoke it. This cannot be undone."
	if k.Kind == store.KeyKindSession {
		msg = "This is the MCP credential of a browser session. Revoking it stops that session's agent at once; the session itself stays signed in. This cannot be undone."
	}
	facts := []detail{{"Name", k.Name}, {"Key", k.Prefix + "…"}, {"Scopes", orNone(k.Scopes)}, {"Created", fullDate(k.CreatedAt)}}
	if !k.LastUsedAt.IsZero() {
		facts = append(facts, detail{"Last used", fullDate(k.LastUsedAt)})
	}
	h.page(w, r, c, http.StatusOK, "confirm", "keys", "Revoke API key", confirmData{
		Heading: "Revoke this API key?", Message: msg, Facts: facts,
		Action: "/account/keys/" + k.ID + "/revoke", Button: "Revoke key", Cancel: "/account/keys", Danger: true,
	}, "")
}

func (h *Handler) keyRevoke(w http.ResponseWriter, r *http.Request, c *caller) {
	k, ok := h.ownKey(w, r, c)
	if !ok {
		return
	}
	if !k.RevokedAt.IsZero() {
		http.Redirect(w, r, "/account/keys?done=key_already_revoked", http.StatusSeeOther)
		return
	}
	if _, err := h.opts.Keys.Revoke(r.Context(), k.ID); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/account/keys?done=key_revoked", http.StatusSeeOther)
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// sentence capitalises a service's message for display.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// fieldMessage turns a service's terse field complaint ("is required",
// "at most 100 characters") into a sentence about the field.
func fieldMessage(label, msg string) string {
	switch {
	case label == "":
		return sentence(msg)
	case msg == "required":
		return label + " is required."
	case strings.HasPrefix(msg, "at most "):
		return sentence(label + " can have " + msg)
	case strings.HasPrefix(msg, "is ") || strings.HasPrefix(msg, "must ") || strings.HasPrefix(msg, "contains "):
		return sentence(label + " " + msg)
	}
	return sentence(msg)
}
