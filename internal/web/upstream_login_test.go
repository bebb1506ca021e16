package web

import (
	"net/http"
	"strings"
	"testing"
)

func TestLoginPageUpstreamButtons(t *testing.T) {
	s := newStack(t)
	c := s.client()
	r := c.get("/login")
	wantStatus(t, r, http.StatusOK)
	if strings.Contains(r.Body, "Continue with") {
		t.Errorf("buttons without configured providers")
	}
	s.web.opts.LoginProviders = []LoginProvider{{Name: "corp", DisplayName: "Corp <SSO>"}, {Name: "github", DisplayName: "GitHub"}}
	r = c.get("/login?return_to=" + "%2Foauth%2Fconsent%3Fid%3D1%26x%3D2")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `href="/login/upstream/corp?return_to=%2Foauth%2Fconsent%3Fid%3D1%26x%3D2"`, `Continue with Corp &lt;SSO&gt;`,
		`href="/login/upstream/github?return_to=%2Foauth%2Fconsent%3Fid%3D1%26x%3D2"`, `Continue with GitHub`)
	// A foreign return_to is not carried into the buttons.
	r = c.get("/login?return_to=https%3A%2F%2Fevil.example%2F")
	wantBody(t, r, `href="/login/upstream/corp?return_to=%2Faccount"`)
}
